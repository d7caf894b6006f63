import { localStorage } from './local.js';
import type { Storage } from './storage.js';

export * from './storage.js';

export interface StorageConfig {
  STORAGE_DRIVER: 'auto' | 'local' | 'cloudinary';
  STORAGE_LOCAL_DIR: string;
  PUBLIC_BASE_URL: string;
  CLOUDINARY_URL: string;
  CLOUDINARY_FOLDER: string;
  STORAGE_TIMEOUT_MS: number;
  STORAGE_RETRIES: number;
}

export function storageDriver(config: StorageConfig): 'local' | 'cloudinary' {
  if (config.STORAGE_DRIVER === 'auto') return config.CLOUDINARY_URL ? 'cloudinary' : 'local';
  return config.STORAGE_DRIVER;
}

export async function createStorage(config: StorageConfig): Promise<Storage> {
  const driver = storageDriver(config);
  if (driver === 'cloudinary') {
    throw new Error('STORAGE_DRIVER=cloudinary is not available yet; unset CLOUDINARY_URL or set STORAGE_DRIVER=local');
  }
  return localStorage(config.STORAGE_LOCAL_DIR, config.PUBLIC_BASE_URL);
}
