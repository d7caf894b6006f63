import type { Migration } from 'kysely';
import * as initial from './20261123_0001_initial.js';
import * as facesPersons from './20261125_0008_faces_persons.js';
import * as deadLetters from './20261126_0006_dead_letters.js';
import * as vendorApi from './20261127_0005_vendor_api.js';
import * as eventsWebhooks from './20261128_0010_events_webhooks.js';
import * as personSketch from './20261205_0015_person_sketch.js';
import * as dataLifecycle from './20261206_0013_data_lifecycle.js';
import * as vendorCorsOrigins from './20261206_0014_vendor_cors_origins.js';
import * as tokenVersion from './20261206_0015_token_version.js';
import * as retention from './20261206_0017_retention.js';
import * as jobStalls from './20261206_0020_job_stalls.js';

/**
 * Every migration, in order. Imported statically so the list is the same under
 * tsx and in the compiled build. Never edit a landed migration: add one.
 */
export const migrations: Record<string, Migration> = {
  '20261123_0001_initial': initial,
  '20261125_0008_faces_persons': facesPersons,
  '20261126_0006_dead_letters': deadLetters,
  '20261127_0005_vendor_api': vendorApi,
  '20261128_0010_events_webhooks': eventsWebhooks,
  '20261205_0015_person_sketch': personSketch,
  '20261206_0013_data_lifecycle': dataLifecycle,
  '20261206_0014_vendor_cors_origins': vendorCorsOrigins,
  '20261206_0015_token_version': tokenVersion,
  '20261206_0017_retention': retention,
  '20261206_0020_job_stalls': jobStalls,
};
