import { HostPolicy } from '../../src/edge/access.ts';
import { Credentials } from '../../src/edge/credentials.ts';
import type { HttpOptions } from '../../src/edge/http.ts';
import { Store } from '../../src/store/index.ts';

/** Options for an HTTP app built alone in a test: credentials in an in-memory SQLite store. */
export async function bareHttpOptions(overrides: Partial<HttpOptions> = {}): Promise<HttpOptions> {
  const store = await Store.open(':memory:');
  return {
    credentials: await Credentials.open(store.credentials),
    hosts: new HostPolicy([]),
    trustLoopback: true,
    tls: null,
    legacyTokenFromSettings: false,
    maxUploadBytes: 1024,
    wsPort: 1,
    ...overrides,
  };
}
