/** The SQLite store's stats tables (stats.ts ROLLUPS): rollups the writer keeps in the same transaction as the records. */
import type { StatsTables } from '../stats.js';

export const STATS_TABLES: StatsTables = {
  decisions: 'decisions',
  sas: 'decision_sas',
  checkpoints: 'checkpoints',
  hourly: 'counts_ns_hour',
  daily: 'counts_ns_day',
  cluster: 'counts_hour',
  unmapped: 'unmapped_hour',
};
