import { CERT_CRITICAL_DAYS, CERT_WARNING_DAYS } from '../monitoring/monitor.js';
import type { Machine } from '../model.js';
import { DISK_LIMITS } from './checks-site.js';
import { result, type CheckInput, type CheckResult } from './types.js';

/** The agent version this vault ships with; agents more than 4 minor versions behind stop being supported (as ASR). */
export const CURRENT_AGENT_VERSION = '0.1.0';
export const SUPPORTED_MINOR_VERSIONS_BEHIND = 4;
/** Reports older than this are stale: the agent stopped reporting. */
const REPORT_STALE_SECONDS = 3600;
const SKEW_WARNING_SECONDS = 30;
const SKEW_FAIL_SECONDS = 300;

/** The hosts and ports agents must reach, outbound only: what the site firewall must allow. */
export function allowList(i: CheckInput): { host: string; port: number; purpose: string }[] {
  const e = i.env.endpoints();
  const list: { host: string; port: number; purpose: string }[] = [];
  for (const [url, purpose] of [[e.vault, 'vault API (registration, heartbeats)'], [e.replicator, 'replicator (chunk upload, point commit)']] as const) {
    if (!URL.canParse(url)) continue; // not listening yet (an in-process vault)
    const u = new URL(url);
    const entry = { host: u.hostname, port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)), purpose };
    if (!list.some((x) => x.host === entry.host && x.port === entry.port)) list.push(entry);
  }
  return list;
}

const reportAge = (m: Machine, now: Date) => (m.agentReport?.receivedAt ? (now.getTime() - Date.parse(m.agentReport.receivedAt)) / 1000 : Infinity);

/** 5. Networking: DNS, TCP and TLS reachability of the vault and the replicator as each agent reported them. */
export function networkingCheck(i: CheckInput): CheckResult {
  const allow = allowList(i);
  const allowText = allow.map((a) => `${a.host}:${a.port}`).join(', ');
  const measured: Record<string, unknown> = { allowList: allow, agents: {} };
  const problems: string[] = [];
  const stale: string[] = [];
  for (const m of i.machines) {
    (measured.agents as Record<string, unknown>)[m.name] = m.agentReport?.endpoints ?? null;
    if (!m.agentReport || reportAge(m, i.now) > REPORT_STALE_SECONDS) {
      stale.push(m.name);
      continue;
    }
    for (const e of m.agentReport.endpoints) {
      const why = !e.dns ? 'its name does not resolve' : !e.tcp ? 'no TCP connection' : null;
      if (why) problems.push(`the agent of '${m.name}' cannot reach the ${e.role} at ${e.host}:${e.port}: ${why}${e.error ? ` (${e.error})` : ''}${m.agentReport.proxy ? ` through proxy ${m.agentReport.proxy}` : ''}`);
    }
  }
  const remediation = `allow outbound connections from the machines to ${allowText} (agents need no inbound connection); check DNS and the proxy`;
  if (problems.length > 0) return result('networking', 'fail', problems.join('; '), measured, remediation);
  if (stale.length > 0) return result('networking', 'warning', `no recent reachability report from the agent of ${stale.map((s) => `'${s}'`).join(', ')}; outbound allow-list: ${allowText}`, measured, 'start the agent (it reports at start and every few minutes); make sure it reaches the vault');
  return result('networking', 'pass', `the agents reach the vault and the replicator; outbound allow-list: ${allowText}`, measured);
}

/** 6. Certificates: the agents trust the vault's chain; the vault's certificate is not expiring; clocks agree. */
export function certificatesCheck(i: CheckInput): CheckResult {
  const cert = i.env.certificate();
  const days = cert ? (Date.parse(cert.notAfter) - i.now.getTime()) / 86400_000 : null;
  const measured: Record<string, unknown> = { vaultCertificate: cert ? { issuer: cert.issuer, notAfter: cert.notAfter, daysLeft: Math.floor(days as number) } : null, agents: {} };
  const fails: string[] = [];
  const warnings: string[] = [];
  if (cert && days !== null) {
    if (days <= 0) fails.push(`the vault's certificate expired on ${cert.notAfter}`);
    else if (days < CERT_WARNING_DAYS) (days < CERT_CRITICAL_DAYS ? fails : warnings).push(`the vault's certificate expires in ${Math.floor(days)} days (${cert.notAfter})`);
  } else {
    warnings.push('the vault serves plain HTTP: agents cannot verify it');
  }
  for (const m of i.machines) {
    const r = m.agentReport;
    if (!r) continue;
    (measured.agents as Record<string, unknown>)[m.name] = { tls: r.endpoints.map((e) => ({ role: e.role, tls: e.tls, issuer: e.issuer ?? null })), clockSkewSeconds: r.clockSkewSeconds ?? null };
    for (const e of r.endpoints) {
      if (e.tls === 'untrusted') fails.push(`the agent of '${m.name}' does not trust the ${e.role}'s certificate, issued by '${e.issuer ?? 'unknown'}'`);
      if (e.tls === 'expired') fails.push(`the agent of '${m.name}' sees an expired certificate at the ${e.role}`);
      if (e.tls === 'bad-name') fails.push(`the ${e.role}'s certificate does not name ${e.host}, as the agent of '${m.name}' calls it`);
    }
    const skew = Math.abs(r.clockSkewSeconds ?? 0);
    if (skew > SKEW_FAIL_SECONDS) fails.push(`the clock of '${m.name}' is ${Math.round(skew)} s off the vault's`);
    else if (skew > SKEW_WARNING_SECONDS) warnings.push(`the clock of '${m.name}' is ${Math.round(skew)} s off the vault's`);
  }
  const remediation = "give agents the vault's CA (the credentials file from `refuge vault init`, or --ca), renew the vault certificate before it expires, and run NTP on every machine";
  if (fails.length > 0) return result('certificates', 'fail', fails.join('; '), measured, remediation);
  if (warnings.length > 0) return result('certificates', 'warning', warnings.join('; '), measured, remediation);
  return result('certificates', 'pass', `agents trust the vault's certificate (valid for ${Math.floor(days as number)} more days); clocks agree`, measured);
}

/** An agent version's major and minor numbers (0 where a part does not parse). */
export const minor = (v: string): [number, number] => {
  const [maj, min] = v.split('.').map((x) => Number.parseInt(x, 10));
  return [Number.isFinite(maj) ? (maj as number) : 0, Number.isFinite(min) ? (min as number) : 0];
};

/** 7. Support matrix: agent version current enough; OS, disk count and disk sizes supported. */
export function supportMatrixCheck(i: CheckInput): CheckResult {
  const [curMajor, curMinor] = minor(CURRENT_AGENT_VERSION);
  const fails: string[] = [];
  const warnings: string[] = [];
  for (const m of i.machines) {
    const [maj, min] = minor(m.agentVersion);
    const behind = maj < curMajor ? Infinity : maj === curMajor ? curMinor - min : 0;
    if (behind > SUPPORTED_MINOR_VERSIONS_BEHIND) fails.push(`the agent of '${m.name}' is version ${m.agentVersion}, more than ${SUPPORTED_MINOR_VERSIONS_BEHIND} versions behind ${CURRENT_AGENT_VERSION}`);
    else if (behind > 0) warnings.push(`the agent of '${m.name}' is version ${m.agentVersion}; ${CURRENT_AGENT_VERSION} is current`);
    if (!/linux/i.test(m.os)) warnings.push(`'${m.name}' runs '${m.os}', which Refuge has not been tested on (Linux is supported)`);
    // The agent's host, from its heartbeats: the agent itself runs on Linux x86-64 or arm64 only.
    const host = m.hostFacts;
    if (host && (!/linux/i.test(host.os) || !['x64', 'arm64'].includes(host.arch))) {
      warnings.push(`the agent of '${m.name}' runs on ${host.os} ${host.arch} (kernel ${host.kernel}); agents are supported on Linux x86-64 and arm64`);
    }
    if (m.disks.length > DISK_LIMITS.maxDisks) fails.push(`'${m.name}' has ${m.disks.length} disks (at most ${DISK_LIMITS.maxDisks})`);
    const odd = m.disks.filter((d) => d.sizeBytes % 512 !== 0);
    if (odd.length > 0) fails.push(`disks of '${m.name}' are not whole 512-byte sectors: ${odd.map((d) => d.name).join(', ')}`);
  }
  const measured = {
    current: CURRENT_AGENT_VERSION,
    agents: Object.fromEntries(i.machines.map((m) => [m.name, { version: m.agentVersion, os: m.os, disks: m.disks.length, ...(m.hostFacts ? { host: { os: m.hostFacts.os, kernel: m.hostFacts.kernel, arch: m.hostFacts.arch } } : {}) }])),
  };
  const remediation = `update the agents to ${CURRENT_AGENT_VERSION}; keep machines within the support matrix (Linux, at most 64 disks of whole sectors)`;
  if (fails.length > 0) return result('support-matrix', 'fail', fails.join('; '), measured, remediation);
  if (warnings.length > 0) return result('support-matrix', 'warning', warnings.join('; '), measured, remediation);
  return result('support-matrix', 'pass', `agent ${i.machines.map((m) => m.agentVersion).join(', ')} is current; OS and disks are supported`, measured);
}
