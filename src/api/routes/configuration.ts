import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { RefugeError } from '../../core/errors.js';
import { SiteResources } from '../../orchestration/site-resources.js';
import type { AppDeps } from '../deps.js';
import { siteView, vaultView, type SiteNames } from '../views.js';
import { Name, VaultParams, named } from './params.js';
import { ListQuery, listPage } from './paging.js';

export const Capacity = Type.Object(
  { vcpus: Type.Integer({ minimum: 0 }), memoryMiB: Type.Integer({ minimum: 0 }), diskGiB: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
const Networks = Type.Array(
  Type.Object({ name: Name, cidr: Type.Optional(Type.String({ maxLength: 64 })), addresses: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
  { maxItems: 256 },
);
const Limits = Type.Object(
  { storeThroughputMiBps: Type.Optional(Type.Number({ exclusiveMinimum: 0 })), linkThroughputMiBps: Type.Optional(Type.Number({ exclusiveMinimum: 0 })) },
  { additionalProperties: false },
);

const Hook = Type.String({ minLength: 1, maxLength: 4096 });
/** A site's fabric provider settings (see SiteFabricSettings in vault/model.ts); the kind is `provider`. */
const FabricSettings = Type.Object(
  {
    qemuBinary: Type.Optional(Type.String({ minLength: 1, maxLength: 4096 })),
    accelerator: Type.Optional(Type.Union([Type.Literal('kvm'), Type.Literal('tcg'), Type.Literal('auto')])),
    libvirtUri: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    domainPrefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{0,40}$' })),
    hooks: Type.Optional(Type.Object({ start: Hook, status: Hook, stop: Hook, delete: Hook, console: Type.Optional(Hook) }, { additionalProperties: false })),
    hookTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  },
  { additionalProperties: false },
);
const Provider = Type.Union([Type.Literal('qemu'), Type.Literal('libvirt'), Type.Literal('command')]);

/** A command site without its four hooks could start nothing: refused when configured, not at failover time. */
function checkFabric(provider: 'qemu' | 'libvirt' | 'command', settings: { hooks?: unknown } | undefined): void {
  if (provider === 'command' && !settings?.hooks) {
    throw new RefugeError('invalid_argument', "a site with provider 'command' needs fabric.hooks (start, status, stop, delete)", { hint: 'the hook contract is in src/fabric/command/README.md' });
  }
}

/** Vaults and sites (capacity, networks, throughput limits), and the machines a site's fabric runs. */
export function configurationRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  const siteNames = async (vaultId: string): Promise<SiteNames> => new Map((await repos.sites.list(vaultId)).map((s) => [s.id, s.name]));

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults', { schema: { querystring: ListQuery } }, async (req) => {
      const { limit, after } = listPage(req.query);
      const vaults = await repos.vaults.list({ limit, ...(after ? { after } : {}) });
      return listPage.wrap(await Promise.all(vaults.map(async (v) => vaultView(v, await siteNames(v.id)))), limit);
    });

    app.post('/vaults', {
      config: { permission: 'configure' },
      schema: { body: Type.Object({ name: Name }, { additionalProperties: false }) },
    }, async (req, reply) => {
      const v = await repos.vaults.create(req.body.name);
      return reply.code(201).send(vaultView(v, new Map()));
    });

    app.get('/vaults/:vault', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return vaultView(v, await siteNames(v.id));
    });

    app.patch('/vaults/:vault', {
      config: { permission: 'configure' },
      schema: { params: VaultParams, body: Type.Object({ location: Name }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.body.location);
      await repos.vaults.setLocation(v.id, site.id);
      return vaultView(await repos.vaults.get(v.name), await siteNames(v.id));
    });

    app.delete('/vaults/:vault', { config: { permission: 'configure' }, schema: { params: VaultParams } }, async (req, reply) => {
      await repos.vaults.delete(await repos.vaults.get(req.params.vault));
      return reply.code(204).send();
    });

    app.get('/vaults/:vault/sites', { schema: { params: VaultParams, querystring: ListQuery } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const { limit, after } = listPage(req.query);
      return listPage.wrap((await repos.sites.list(v.id, { limit, ...(after ? { after } : {}) })).map(siteView), limit);
    });

    app.post('/vaults/:vault/sites', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Object(
          { name: Name, provider: Type.Optional(Provider), fabric: Type.Optional(FabricSettings), capacity: Type.Optional(Capacity), networks: Type.Optional(Networks), limits: Type.Optional(Limits) },
          { additionalProperties: false },
        ),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const provider = req.body.provider ?? 'qemu';
      checkFabric(provider, req.body.fabric);
      const site = await repos.sites.create({
        vaultId: v.id,
        name: req.body.name,
        provider,
        config: { ...SiteResources.defaultConfig(deps.dataDir, req.body.name), ...(req.body.fabric ? { fabric: req.body.fabric } : {}) },
        capacity: req.body.capacity ?? { vcpus: 16, memoryMiB: 32768, diskGiB: 1024 },
        networks: req.body.networks ?? [],
        limits: req.body.limits ?? {},
      });
      return reply.code(201).send(siteView(site));
    });

    app.get('/vaults/:vault/sites/:site', { schema: { params: named('site') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return siteView(await repos.sites.get(v.id, req.params.site));
    });

    app.patch('/vaults/:vault/sites/:site', {
      config: { permission: 'configure' },
      schema: { params: named('site'), body: Type.Object({ capacity: Type.Optional(Capacity), networks: Type.Optional(Networks), limits: Type.Optional(Limits), provider: Type.Optional(Provider), fabric: Type.Optional(FabricSettings) }, { additionalProperties: false }) },
    }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      const { provider, fabric, ...rest } = req.body;
      const change = provider || fabric ? { fabric: { provider: provider ?? site.provider, settings: fabric ?? (provider && provider !== site.provider ? {} : (site.config.fabric ?? {})) } } : {};
      if (change.fabric) checkFabric(change.fabric.provider, change.fabric.settings);
      return siteView(await repos.sites.update(site, { ...rest, ...change }));
    });

    app.delete('/vaults/:vault/sites/:site', { config: { permission: 'configure' }, schema: { params: named('site') } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      await repos.sites.delete(await repos.sites.get(v.id, req.params.site));
      return reply.code(204).send();
    });

    // Machines the site's fabric runs (recovered copies, test failovers): their state and serial console.
    const SiteMachineParams = Type.Object({ vault: Name, site: Name, machine: Name });
    app.get('/vaults/:vault/sites/:site/machines/:machine', { schema: { params: SiteMachineParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      return { name: req.params.machine, site: site.name, ...(await deps.sites.fabric(site).status(req.params.machine)) };
    });
    app.get('/vaults/:vault/sites/:site/machines/:machine/console', { schema: { params: SiteMachineParams } }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.get(v.id, req.params.site);
      return reply.type('text/plain; charset=utf-8').send(await deps.sites.fabric(site).console(req.params.machine));
    });
  };
}
