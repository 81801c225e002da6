import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../core/errors.js';
import { ID_PATTERN } from '../core/ids.js';
import { CHUNK_CONTENT_TYPE, CHUNK_LENGTH_HEADER, PATCH_BASE_HEADER, PATCH_CONTENT_TYPE } from '../protocol/chunk-encoding.js';
import { BATCH_CONTENT_TYPE, readBatch } from '../protocol/chunk-batch.js';
import { BlockHashesRequest, ChunkBatchResponse, BlockHashesResponse, Hash, MissingChunksRequest, MissingChunksResponse, CommitPointRequest, CommitPointResponse, PointChunksQuery, PointChunksResponse, StageChangesRequest } from '../protocol/schemas.js';
import { MAX_LISTED_CHUNKS } from '../protocol/limits.js';
import type { ReceivedEncoding, Replicator } from './replicator.js';

/**
 * The replicator's HTTP endpoints (docs/protocol.md), mounted under /replicator/v1 by the vault or by a standalone
 * replicator. Chunk bodies are raw bytes (whole chunks, or patches against a stored base chunk), optionally
 * zstd-compressed (`content-encoding: zstd`); the rebuilt chunk's name (its SHA-256, or its leaf-digest name in a format-3 store) must equal the hash in the URL.
 */
/**
 * A batch body that stalls this long is dropped. Shorter than the agent takes to see the link down and restart its
 * upload (LINK_DOWN_HEARTBEATS heartbeats, 10 s apart), longer than a lossy link's retransmission pauses.
 */
export const BATCH_STALL_MS = 10_000;

/**
 * Largest commit body: about 880,000 listed chunks (76 bytes of JSON each), that is 215 GiB of changed data in
 * 256 KiB chunks or 13 GiB in 16 KiB ones. The agent sends longer lists ahead in parts (`/points/staged`), so this
 * bounds only older agents. The API's other bodies stay within 1 MiB.
 */
export const MAX_COMMIT_BYTES = 64 * 1024 * 1024;

/** Largest staged part (`/points/staged`): MAX_STAGE_PART_ENTRIES entries of about 76 bytes, with room to spare. */
export const MAX_STAGE_BODY_BYTES = 16 * 1024 * 1024;

export function replicatorRoutes(replicator: Replicator, maxChunkBytes: number): FastifyPluginAsync {
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    const raw = (_req: FastifyRequest, body: Buffer, done: (err: Error | null, body?: Buffer) => void) => done(null, body);
    app.addContentTypeParser(CHUNK_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: maxChunkBytes }, raw);
    // A patch holds at most the chunk's bytes plus 8 bytes per run.
    app.addContentTypeParser(PATCH_CONTENT_TYPE, { parseAs: 'buffer', bodyLimit: 2 * maxChunkBytes }, raw);
    // A batch is read as it arrives (readBatch bounds each entry, and the entries): the stream goes to the handler.
    app.addContentTypeParser(BATCH_CONTENT_TYPE, (_req: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: IncomingMessage) => void) => done(null, payload));
    const Params = Type.Object({ replication: Type.String({ pattern: ID_PATTERN }) });

    app.post('/replications/:replication/chunks/missing', {
      schema: { params: Params, body: MissingChunksRequest, response: { 200: MissingChunksResponse } },
    }, async (req) => ({ missing: await replicator.missingChunks(req.params.replication, req.body.hashes) }));

    app.post('/replications/:replication/chunks/block-hashes', {
      schema: { params: Params, body: BlockHashesRequest, response: { 200: BlockHashesResponse } },
    }, async (req) => replicator.blockHashes(req.params.replication, req.body.hashes));

    app.get('/replications/:replication/points/:point/chunks', {
      schema: { params: Type.Object({ replication: Type.String({ pattern: ID_PATTERN }), point: Type.String({ pattern: ID_PATTERN }) }), querystring: PointChunksQuery, response: { 200: PointChunksResponse } },
    }, async (req) => {
      const { listing, disk, from, limit } = req.query;
      if (disk === undefined) return replicator.pointChunks(req.params.replication, req.params.point, { sparse: listing === 'sparse' });
      if (listing !== 'sparse') throw new RefugeError('invalid_argument', 'a paged chunk listing (disk=) is sparse: add listing=sparse');
      const pageSize = limit === undefined ? MAX_LISTED_CHUNKS : Number(limit);
      if (pageSize < 1 || pageSize > MAX_LISTED_CHUNKS) throw new RefugeError('invalid_argument', `limit ${limit} is outside 1..${MAX_LISTED_CHUNKS}`);
      return replicator.pointChunkPage(req.params.replication, req.params.point, { disk, from: Number(from ?? 0), limit: pageSize });
    });

    app.put('/replications/:replication/chunks/:hash', {
      schema: { params: Type.Object({ replication: Type.String({ pattern: ID_PATTERN }), hash: Hash }) },
    }, async (req, reply) => {
      await replicator.putChunk(req.params.replication, req.params.hash, req.body as Buffer, encodingOf(req));
      return reply.code(204).send();
    });

    app.post('/replications/:replication/chunks/batch', {
      schema: { params: Params, response: { 200: ChunkBatchResponse } },
    }, async (req) => {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== BATCH_CONTENT_TYPE || !(req.body instanceof Readable)) throw new RefugeError('invalid_argument', `a chunk batch is sent as ${BATCH_CONTENT_TYPE}`);
      // A body that stops arriving (the link is down) is dropped after a while: once the link is back, the agent's
      // kernel would otherwise deliver the rest of it (TCP retransmits what it had sent) while the agent's restarted
      // upload sends the same chunks again. Dropped, it costs at most the entries that were under way.
      req.raw.setTimeout(BATCH_STALL_MS, () => req.raw.destroy(new RefugeError('unavailable', `chunk batch body stalled for ${BATCH_STALL_MS} ms`)));
      try {
        return await replicator.putChunks(req.params.replication, readBatch(req.body, 2 * maxChunkBytes));
      } finally {
        req.raw.setTimeout(0);
      }
    });

    app.post('/replications/:replication/points/staged', {
      bodyLimit: MAX_STAGE_BODY_BYTES,
      schema: { params: Params, body: StageChangesRequest },
    }, async (req, reply) => {
      await replicator.stageChanges(req.params.replication, req.body);
      return reply.code(204).send();
    });

    app.post('/replications/:replication/points', {
      // A commit lists every changed chunk: a first point of a large disk, or one of small chunks, lists many.
      bodyLimit: MAX_COMMIT_BYTES,
      schema: { params: Params, body: CommitPointRequest, response: { 201: CommitPointResponse } },
    }, async (req, reply) => reply.code(201).send(await replicator.commitPoint(req.params.replication, req.body)));
  };
}

function encodingOf(req: FastifyRequest): ReceivedEncoding {
  const contentEncoding = (req.headers['content-encoding'] ?? 'identity').toString().toLowerCase();
  if (contentEncoding !== 'identity' && contentEncoding !== 'zstd') {
    throw new RefugeError('invalid_argument', `content-encoding '${contentEncoding}' is not accepted`, { hint: 'send zstd or identity' });
  }
  const compressed = contentEncoding === 'zstd';
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== PATCH_CONTENT_TYPE) return { compressed };
  const base = String(req.headers[PATCH_BASE_HEADER] ?? '');
  const length = Number(req.headers[CHUNK_LENGTH_HEADER]);
  if (base !== 'zero' && !/^[0-9a-f]{64}$/.test(base)) {
    throw new RefugeError('invalid_argument', `${PATCH_BASE_HEADER} must be a chunk hash or 'zero'`);
  }
  return { compressed, patch: { base: base === 'zero' ? null : base, chunkLength: length } };
}
