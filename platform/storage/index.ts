import { cloudinaryStorage, parseCloudinaryUrl } from './cloudinary.js';
import { localStorage } from './local.js';
import type { Storage } from './storage.js';
import { publicBaseUrl } from '../config-sections.js';

export * from './storage.js';

export interface StorageConfig {
  STORAGE_DRIVER: 'auto' | 'local' | 'cloudinary';
  STORAGE_LOCAL_DIR: string;
  PUBLIC_BASE_URL: string;
  PORT: number;
  CLOUDINARY_URL: string;
  CLOUDINARY_FOLDER: string;
  STORAGE_TIMEOUT_MS: number;
  STORAGE_RETRIES: number;
}

export function storageDriver(config: StorageConfig): 'local' | 'cloudinary' {
  if (config.STORAGE_DRIVER === 'auto') return config.CLOUDINARY_URL ? 'cloudinary' : 'local';
  return config.STORAGE_DRIVER;
}

/** The configured storage; throws naming the variable when its settings are unusable. */
export async function createStorage(config: StorageConfig): Promise<Storage> {
  const driver = storageDriver(config);
  if (driver === 'cloudinary') {
    if (!config.CLOUDINARY_URL) throw new Error('STORAGE_DRIVER=cloudinary needs CLOUDINARY_URL (cloudinary://<api_key>:<api_secret>@<cloud_name>)');
    return cloudinaryStorage({
      credentials: parseCloudinaryUrl(config.CLOUDINARY_URL),
      folder: config.CLOUDINARY_FOLDER,
      timeoutMs: config.STORAGE_TIMEOUT_MS,
      retries: config.STORAGE_RETRIES,
    });
  }
  return localStorage(config.STORAGE_LOCAL_DIR, publicBaseUrl(config));
}
