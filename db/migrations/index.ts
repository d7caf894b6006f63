import type { Migration } from 'kysely';
import * as initial from './20261123_0001_initial.js';
import * as vendorApi from './20261124_0005_vendor_api.js';

/**
 * Every migration, in order. Imported statically so the list is the same under
 * tsx and in the compiled build. Never edit a landed migration: add one.
 */
export const migrations: Record<string, Migration> = {
  '20261123_0001_initial': initial,
  '20261124_0005_vendor_api': vendorApi,
};
