import { mkdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { randomToken } from '../ids.js';
import { AppError } from '../../jobs/errors.js';
import { assertSafeKey, type Storage, type StoredObject } from './storage.js';

/**
 * Files on local disk, served by the API under `/files/<key>`. Writes go to a
 * temporary name and are renamed into place, so a reader never sees half a
 * file and a retried job overwrites atomically. API and workers must share
 * the directory (one host, or a shared volume).
 */
export const FILES_ROUTE = '/files';

export function localStorage(dir: string, publicBaseUrl: string): Storage {
  const root = resolve(dir);
  const base = publicBaseUrl.replace(/\/+$/, '');
  const pathOf = (key: string) => {
    assertSafeKey(key);
    return join(root, key);
  };
  return {
    driver: 'local',
    async put(key, bytes, _contentType, signal): Promise<StoredObject> {
      const path = pathOf(key);
      const tmp = `${path}.${randomToken(6)}.tmp`;
      try {
        await mkdir(dirname(path), { recursive: true });
        await writeFile(tmp, bytes, signal ? { signal } : undefined);
        await rename(tmp, path);
      } catch (error) {
        await rm(tmp, { force: true }).catch(() => undefined);
        if (signal?.aborted) throw signal.reason;
        throw new AppError('STORAGE_FAILED', `local storage write failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
          cause: error,
        });
      }
      return { key, url: `${base}${FILES_ROUTE}/${key}`, bytes: bytes.length };
    },
    async get(object, signal) {
      try {
        return await readFile(pathOf(object.key), signal ? { signal } : undefined);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new AppError('SOURCE_NOT_FOUND', 'the uploaded file is no longer in storage');
        throw new AppError('STORAGE_FAILED', `local storage read failed: ${(error as NodeJS.ErrnoException).code}`, { cause: error });
      }
    },
    async remove(target) {
      // A prefix is a folder here: keys are `<prefix>/<name>`.
      const paths = 'prefix' in target ? [pathOf(target.prefix)] : target.keys.map(pathOf);
      for (const path of paths) {
        try {
          await rm(path, { recursive: true, force: true });
        } catch (error) {
          throw new AppError('STORAGE_FAILED', `local storage remove failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
            cause: error,
          });
        }
      }
      await pruneEmptyParents(root, paths);
    },
    async check() {
      await mkdir(root, { recursive: true });
      const probe = join(root, `.probe-${randomToken(6)}`);
      await writeFile(probe, 'ok');
      await rm(probe, { force: true });
    },
  };
}

/**
 * Removes the folders left empty above removed files, up to the vendor's
 * folder (`<vendor>/<project>/…`): a swept vendor leaves no empty tree behind.
 * A folder another write just filled is not empty and stays.
 */
async function pruneEmptyParents(root: string, paths: readonly string[]): Promise<void> {
  const folders = new Set(paths.map((p) => dirname(p)));
  for (const start of folders) {
    for (let dir = start; dir.startsWith(root) && relative(root, dir).split(sep).length > 1; dir = dirname(dir)) {
      try {
        await rmdir(dir);
      } catch {
        break; // not empty (or already gone)
      }
    }
  }
}
