import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ID_PATTERN } from '../core/ids.js';
import { Hash, MissingChunksRequest, MissingChunksResponse, CommitPointRequest, CommitPointResponse } from '../protocol/schemas.js';
import type { Replicator } from './replicator.js';

/**
 * The replicator's HTTP endpoints (docs/protocol.md), mounted under /replicator/v1 by the vault or by a standalone
 * replicator. Chunk bodies are raw bytes (application/octet-stream) whose SHA-256 must equal the hash in the URL.
 */
export function replicatorRoutes(replicator: Replicator, maxChunkBytes: number): FastifyPluginAsync {
  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: maxChunkBytes }, (_req, body, done) => done(null, body));
    const Params = Type.Object({ replication: Type.String({ pattern: ID_PATTERN }) });

    app.post('/replications/:replication/chunks/missing', {
      schema: { params: Params, body: MissingChunksRequest, response: { 200: MissingChunksResponse } },
    }, async (req) => ({ missing: await replicator.missingChunks(req.params.replication, req.body.hashes) }));

    app.put('/replications/:replication/chunks/:hash', {
      schema: { params: Type.Object({ replication: Type.String({ pattern: ID_PATTERN }), hash: Hash }) },
    }, async (req, reply) => {
      await replicator.putChunk(req.params.replication, req.params.hash, req.body as Buffer);
      return reply.code(204).send();
    });

    app.post('/replications/:replication/points', {
      schema: { params: Params, body: CommitPointRequest, response: { 201: CommitPointResponse } },
    }, async (req, reply) => reply.code(201).send(await replicator.commitPoint(req.params.replication, req.body)));
  };
}
