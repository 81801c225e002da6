import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { SiteResources } from '../../orchestration/site-resources.js';
import type { AppDeps } from '../deps.js';
import { machineView, policyView, siteView, vaultView, type SiteNames } from '../views.js';
import { Name, VaultParams, named } from './params.js';

/** Vaults, sites, policies and machines. */
export function configurationRoutes(deps: AppDeps): FastifyPluginAsync {
  const { repos } = deps;
  const siteNames = async (vaultId: string): Promise<SiteNames> =>
    new Map((await repos.sites.list(vaultId)).map((s) => [s.id, s.name]));

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get('/vaults', async () => {
      const vaults = await repos.vaults.list();
      return { items: await Promise.all(vaults.map(async (v) => vaultView(v, await siteNames(v.id)))) };
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

    app.get('/vaults/:vault/sites', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return { items: (await repos.sites.list(v.id)).map(siteView) };
    });

    const Capacity = Type.Object(
      {
        vcpus: Type.Integer({ minimum: 0 }),
        memoryMiB: Type.Integer({ minimum: 0 }),
        diskGiB: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    );
    app.post('/vaults/:vault/sites', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Object(
          { name: Name, provider: Type.Optional(Type.Literal('qemu')), capacity: Type.Optional(Capacity) },
          { additionalProperties: false },
        ),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      const site = await repos.sites.create({
        vaultId: v.id,
        name: req.body.name,
        provider: 'qemu',
        config: SiteResources.defaultConfig(deps.dataDir, req.body.name),
        capacity: req.body.capacity ?? { vcpus: 16, memoryMiB: 32768, diskGiB: 1024 },
      });
      return reply.code(201).send(siteView(site));
    });

    app.get('/vaults/:vault/sites/:site', { schema: { params: named('site') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return siteView(await repos.sites.get(v.id, req.params.site));
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

    app.get('/vaults/:vault/policies', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return { items: (await repos.policies.list(v.id)).map(policyView) };
    });

    app.post('/vaults/:vault/policies', {
      config: { permission: 'configure' },
      schema: {
        params: VaultParams,
        body: Type.Object(
          {
            name: Name,
            crashIntervalSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 86400 })),
            retentionHours: Type.Optional(Type.Number({ minimum: 1, maximum: 15 * 24 })),
            rpoThresholdSeconds: Type.Optional(Type.Number({ minimum: 1 })),
          },
          { additionalProperties: false },
        ),
      },
    }, async (req, reply) => {
      const v = await repos.vaults.get(req.params.vault);
      // Defaults are ASR's: crash-consistent points every 5 minutes, 1 day retention; alert at 15 minutes of RPO.
      const p = await repos.policies.create({
        vaultId: v.id,
        name: req.body.name,
        crashIntervalSeconds: req.body.crashIntervalSeconds ?? 300,
        retentionHours: req.body.retentionHours ?? 24,
        rpoThresholdSeconds: req.body.rpoThresholdSeconds ?? 900,
      });
      return reply.code(201).send(policyView(p));
    });

    app.get('/vaults/:vault/policies/:policy', { schema: { params: named('policy') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return policyView(await repos.policies.get(v.id, req.params.policy));
    });

    app.get('/vaults/:vault/machines', { schema: { params: VaultParams } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      const names = await siteNames(v.id);
      return { items: (await repos.machines.list(v.id)).map((m) => machineView(m, names)) };
    });

    app.get('/vaults/:vault/machines/:machine', { schema: { params: named('machine') } }, async (req) => {
      const v = await repos.vaults.get(req.params.vault);
      return machineView(await repos.machines.get(v.id, req.params.machine), await siteNames(v.id));
    });
  };
}
