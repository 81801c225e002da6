import { blobName } from '../../src/store/chunks.js';
import { STORE_FORMAT, namingOf } from '../../src/store/store-config.js';

/**
 * A chunk's name in a store of the default format (store-config.ts STORE_FORMAT), as a vault's stores are made:
 * what a test uploading chunks by hand must claim for them. Tests of one format name chunks with that format's
 * naming themselves (replica-store.test.ts).
 */
export const chunkHash = (data: Uint8Array): string => blobName(data, namingOf(STORE_FORMAT));
