/** What the pure decision core is configured with (derived from the config file once at start). */
import type { Keys } from './keys.js';

export type SidecarMode = 'native' | 'classic';

export const TUNNEL_CONTAINER_NAME = 'zscaler-tunnel';
export const TOKEN_VOLUME_NAME = 'tekton-zscaler-token';
export const TOKEN_FILE = 'token';
export const DEFAULT_TOKEN_MOUNT_PATH = '/var/run/secrets/tekton-zscaler.io/serviceaccount';
export const DEFAULT_SERVICE_ACCOUNT = 'default';

export interface SidecarOptions {
  image: string;
  mode: SidecarMode;
  args: string[];
  /** Kubernetes ResourceRequirements, copied as given. */
  resources: Record<string, unknown>;
  /** Kubernetes SecurityContext, copied as given. */
  securityContext: Record<string, unknown>;
  /** Kubernetes Probe; used as startupProbe (native) or readinessProbe (classic). */
  probe: Record<string, unknown>;
}

export interface DecideOptions {
  keys: Keys;
  /** Tekton's config-defaults `default-service-account` (used when a run names none). */
  defaultServiceAccount: string;
  tokenMountPath: string;
  sidecar: SidecarOptions;
}
