/** The decision core's options, derived once from the configuration. */
import { keysFor } from '../core/keys.js';
import type { DecideOptions } from '../core/options.js';
import type { Config } from './schema.js';

export function toDecideOptions(config: Config): DecideOptions {
  return {
    keys: keysFor(config.domain),
    defaultServiceAccount: config.tekton.defaultServiceAccount,
    tokenMountPath: config.injection.tokenMountPath,
    sidecar: config.injection.sidecar,
  };
}
