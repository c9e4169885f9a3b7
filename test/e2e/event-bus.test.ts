import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Organization } from '@medplum/fhirtypes';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CrmSandbox, startCrmSandbox } from '../../src/sandbox/crm/index.ts';
import { type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';
import { exampleFlowText, sandboxEnv } from '../../src/testkit/example-flow.ts';
import { type LoopSetup, startLoopSetup } from '../../src/testkit/loop-setup.ts';
import { deleteStreams, NATS_SKIP, TEST_NATS_URL, testStream } from '../../src/testkit/nats.ts';
import { dropSchemas, PG_SKIP, TEST_PG_URL, testSchema } from '../../src/testkit/postgres.ts';
import {
  parseJsonLine as json,
  lastJson,
  type RunningSluice,
  runSluice,
  startSluice,
} from '../../src/testkit/sluice-process.ts';
import { patientPhi } from './phi-scan.ts';

// The event bus as operators run it: `sluice ingest` reads the EHR into NATS JetStream, `sluice run`
// reads the events into the CRM — against the sandboxes seeded with the bundled sample and a real
// NATS server. The same flow without a bus, into a second CRM, is the reference.

/** Every event the stream holds, as stored: its headers and its body. */
async function storedEvents(stream: string): Promise<{ headers: string; body: string }[]> {
  const nc = await connect({ servers: TEST_NATS_URL });
  try {
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(stream);
    const out: { headers: string; body: string }[] = [];
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (!m) continue;
      // The marks an ingest from no checkpoint puts before a type's snapshot: no record in them.
      if (m.subject.startsWith(`${stream}._snapshot.`)) continue;
      const headers = [...(m.header ?? [])].map(([name]) => `${name}: ${m.header.get(name)}`).join('\n');
      out.push({ headers: `${m.subject}\n${headers}`, body: m.string() });
    }
    return out;
  } finally {
    await nc.close();
  }
}

/** Renames the EHR's first Organization (a change for the next ingest to carry). */
async function renameOrganization(ehr: EhrSandbox, name: string): Promise<void> {
  const [id] = ehr.repo.recordedIds('Organization') as [string];
  const org = await ehr.repo.readResource<Organization>('Organization', id);
  await ehr.repo.updateResource<Organization>({ ...org, name });
}

/** What a CRM holds, without the ids and times it gave: comparable across two sandboxes. */
function holdings(crm: CrmSandbox): string[] {
  return crm
    .records()
    .map((r) => {
      const {
        Id: _id,
        CreatedDate: _c,
        LastModifiedDate: _m,
        SystemModstamp: _s,
        attributes: _a,
        ...rest
      } = r;
      return JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
    })
    .sort();
}

describe.skipIf(NATS_SKIP !== undefined)('the event bus (bus.nats)', () => {
  const stream = testStream();
  let ehr: EhrSandbox;
  let crm: CrmSandbox;
  let reference: CrmSandbox;
  let dir: string;
  let flowFile: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    ehr = await startEhrSandbox({ seed: [SAMPLE_DATA_DIR] });
    crm = await startCrmSandbox();
    reference = await startCrmSandbox();
    dir = mkdtempSync(join(tmpdir(), 'sluice-bus-'));
    const text = exampleFlowText();
    flowFile = join(dir, 'bus.yaml');
    writeFileSync(
      flowFile,
      text.replace(
        /^state:\n/m,
        'state:\n  encryption:\n    key: ${SLUICE_STATE_KEY}\n    keyId: bus-test\n',
      ) + `\nbus:\n  nats:\n    url: \${SLUICE_NATS_URL}\n    stream: ${stream}\n`,
    );
    writeFileSync(join(dir, 'direct.yaml'), text);
    env = {
      ...sandboxEnv(dir, { ehr: ehr.url, crm: crm.url }),
      SLUICE_NATS_URL: TEST_NATS_URL,
      SLUICE_STATE_KEY: randomBytes(32).toString('base64'),
    };
  }, 60_000);
  afterAll(async () => {
    await Promise.all([ehr?.close(), crm?.close(), reference?.close()]);
    await deleteStreams([stream]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads the EHR into the bus while the CRM is down, sealed, and sends what a direct run sends', async () => {
    // Nothing ingested yet: the run reads an empty bus and sends nothing.
    const empty = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(empty.code, empty.stderr).toBe(0);
    expect(lastJson(empty.stdout)).toMatchObject({ read: 0, delivered: 0 });
    // …and says why, so an empty run is not taken for an empty EHR.
    expect(empty.stderr).toContain('no `sluice ingest` has published');

    // The CRM is unreachable: reading the EHR does not need it.
    const ingest = await runSluice(['ingest', flowFile, '--once', '--json'], {
      ...env,
      SLUICE_CRM_URL: 'http://127.0.0.1:1',
    });
    expect(ingest.code, ingest.stderr).toBe(0);
    const ingested = lastJson(ingest.stdout) as { read: number; published: number; byStream: object };
    expect(ingested.read).toBeGreaterThan(0);
    expect(ingested.published).toBe(ingested.read);
    expect(Object.keys(ingested.byStream)).toEqual(['Consent', 'Organization', 'Practitioner', 'Patient']);
    expect(crm.records()).toHaveLength(0);

    // What the bus holds names no patient: every body is ciphertext under the flow key and nothing
    // else (record and origin sealed), and the headers carry a kind and a keyed-hash id only.
    const events = await storedEvents(stream);
    expect(events).toHaveLength(ingested.published);
    const phi = await patientPhi([SAMPLE_DATA_DIR]);
    expect(phi.length).toBeGreaterThan(0);
    for (const event of events) {
      expect(event.body).toMatch(/^sluice-enc1:bus-test:[A-Za-z0-9_-]+$/);
      expect(event.headers).toMatch(
        new RegExp(`^${stream}\\.\\w+\\nSluice-Event: (record|deletion)\\nNats-Msg-Id: [A-Za-z0-9_-]{43}$`),
      );
      // The id is a keyed hash (its form checked above): a short name turns up in base64url by chance.
      const named = event.headers.replace(/^Nats-Msg-Id: .*$/m, '');
      for (const patient of phi)
        for (const { category, value } of patient.values)
          expect(named, `${category} of ${patient.ref}`).not.toContain(value);
    }

    const run = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(run.code, run.stderr).toBe(0);
    const summary = lastJson(run.stdout);
    expect(Number(summary.delivered)).toBeGreaterThan(0);
    expect(summary.delivered).toBe(crm.records().length);

    // The same flow reading the EHR itself, into another CRM: the same records, field for field.
    const direct = await runSluice(['run', join(dir, 'direct.yaml'), '--once', '--json', '--no-progress'], {
      ...env,
      SLUICE_CRM_URL: reference.url,
      SLUICE_STATE_DIR: join(dir, 'direct-state'),
    });
    expect(direct.code, direct.stderr).toBe(0);
    const reference_ = lastJson(direct.stdout);
    for (const key of ['read', 'delivered', 'withheld', 'quarantined'])
      expect(summary[key], key).toBe(reference_[key]);
    expect(holdings(crm)).toEqual(holdings(reference));
  }, 120_000);

  it('carries a change once, repeats nothing, and quarantines an event it cannot open', async () => {
    const again = await runSluice(['ingest', flowFile, '--once', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(lastJson(again.stdout)).toMatchObject({ published: 0, idle: true });

    await renameOrganization(ehr, 'Bus Carried Renamed');
    const change = await runSluice(['ingest', flowFile, '--once', '--json'], env);
    expect(lastJson(change.stdout)).toMatchObject({ published: 1 });

    // Someone without the key publishes an Organization on the flow's subject: not trusted…
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      const js = jetstream(nc);
      const forged = JSON.stringify({ resourceType: 'Organization', id: 'forged', name: 'Forged Org' });
      await js.publish(`${stream}.Organization`, forged);
      // …and one dressed as a Sluice event, unsealed.
      const h = headers();
      h.set('Sluice-Event', 'record');
      await js.publish(`${stream}.Organization`, forged, { headers: h, msgID: 'forged' });
    } finally {
      await nc.close();
    }

    // The run has three Organization events still to read: the change and the two forged ones.
    const behind = lastJson((await runSluice(['status', flowFile, '--json'], env)).stdout) as {
      busWaiting?: { events?: Record<string, number> };
    };
    expect(behind.busWaiting?.events).toEqual({ Consent: 0, Organization: 3, Practitioner: 0, Patient: 0 });

    const before = crm.records().length;
    const run = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(run.code, run.stderr).toBe(0);
    const summary = lastJson(run.stdout);
    expect(summary).toMatchObject({ created: 0, quarantineReasons: { REC_UNPARSEABLE: 2 } });
    // The renamed organisation's records, once: nothing else read from the bus was new.
    expect(Number(summary.updated)).toBeGreaterThan(0);
    expect((summary.byStream as Record<string, { delivered: number }>).Organization?.delivered).toBe(
      summary.updated,
    );
    expect(crm.records()).toHaveLength(before);
    expect(crm.records('Account').filter((a) => a.Name === 'Bus Carried Renamed')).toHaveLength(1);
    expect(crm.records('Account').some((a) => a.Name === 'Forged Org')).toBe(false);
    // Nothing new on the bus: the run reads nothing, and does not take that for a missing ingest.
    const nothing = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(lastJson(nothing.stdout)).toMatchObject({ read: 0 });
    expect(nothing.stderr).not.toContain('sluice ingest');

    // Each ingest that put events on the bus is in the audit trail, in counts; the idle one is not.
    const audit = await runSluice(['audit', 'query', flowFile, '--kind', 'receive', '--json'], env);
    const published = audit.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { reason?: string; details?: { published?: number } })
      .filter((e) => e.reason === 'bus-ingest')
      .map((e) => e.details?.published);
    expect(published).toHaveLength(2);
    expect(published.at(-1)).toBe(1);
    expect(Number(published[0])).toBeGreaterThan(1);

    const status = await runSluice(['status', flowFile, '--json'], env);
    const where = lastJson(status.stdout) as {
      ingestCheckpoints?: { stream: string }[];
      checkpoints?: unknown[];
    };
    expect(where.ingestCheckpoints?.map((c) => c.stream).sort()).toEqual([
      'Consent',
      'Organization',
      'Patient',
      'Practitioner',
    ]);
    expect(where.checkpoints).toHaveLength(4);
    expect((where as { busWaiting?: { events?: Record<string, number> } }).busWaiting?.events).toEqual({
      Consent: 0,
      Organization: 0,
      Practitioner: 0,
      Patient: 0,
    });

    const quarantine = await runSluice(
      ['quarantine', 'list', flowFile, '--json', '--code', 'REC_UNPARSEABLE'],
      env,
    );
    expect(quarantine.stdout).toContain('not a Sluice change event');
    expect(quarantine.stdout).toContain('not sealed under the flow key');
    expect(quarantine.stdout).not.toContain('Forged Org');
  }, 120_000);

  /** A run after a recovery: it succeeds and updates only what the renamed Organization maps to. */
  async function runSendsOnlyTheOrganizationChange(): Promise<void> {
    const run = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(run.code, run.stderr).toBe(0);
    const summary = lastJson(run.stdout);
    expect(summary).toMatchObject({ created: 0 });
    expect(Number(summary.updated)).toBeGreaterThan(0);
    expect((summary.byStream as Record<string, { delivered: number }>).Organization?.delivered).toBe(
      summary.updated,
    );
  }

  it('stops when the stream discarded events the run had not read, and reads on after ingest --reset', async () => {
    await renameOrganization(ehr, 'Renamed While The Run Was Away');
    const ingest = await runSluice(['ingest', flowFile, '--once', '--json'], env);
    expect(lastJson(ingest.stdout)).toMatchObject({ published: 1 });

    // The run stays away longer than the stream keeps events: the age limit discards them (a purge
    // of everything stored so far does the same here).
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      const jsm = await jetstreamManager(nc);
      const info = await jsm.streams.info(stream);
      await jsm.streams.purge(stream, { seq: info.state.last_seq + 1 });
    } finally {
      await nc.close();
    }
    const before = crm.records().length;
    const stopped = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(stopped.code).not.toBe(0);
    expect(`${stopped.stdout}${stopped.stderr}`).toContain('BUS_EVENTS_EXPIRED');
    expect(`${stopped.stdout}${stopped.stderr}`).toContain('sluice ingest FLOW --reset');
    expect(crm.records('Account').some((a) => a.Name === 'Renamed While The Run Was Away')).toBe(false);
    // Status says so before any run: every stream's run would stop.
    const status = lastJson((await runSluice(['status', flowFile, '--json'], env)).stdout) as {
      busWaiting?: { expired?: string[] };
    };
    expect(status.busWaiting?.expired).toEqual(['Consent', 'Organization', 'Practitioner', 'Patient']);
    const text = await runSluice(['status', flowFile], env);
    expect(text.stdout).toContain('BUS_EVENTS_EXPIRED');
    // A plan reads the EHR itself, not the bus: it still sees everything there is.
    const plan = await runSluice(['plan', flowFile, '--json'], env);
    expect(plan.code, plan.stderr).toBe(0);
    const planned = lastJson(plan.stdout) as { streams: Record<string, { read: number }> };
    expect(planned.streams.Organization?.read).toBe(ehr.repo.recordedIds('Organization').length);
    // Nothing moved: the next run stops the same way.
    const still = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(`${still.stdout}${still.stderr}`).toContain('BUS_EVENTS_EXPIRED');

    // The recovery: every EHR record published again, after a snapshot mark per type…
    const reset = await runSluice(['ingest', flowFile, '--once', '--json', '--reset'], env);
    expect(reset.code, reset.stderr).toBe(0);
    const republished = lastJson(reset.stdout) as { read: number; published: number };
    expect(republished.published).toBe(republished.read);
    // …then the run reads on: the change it missed reaches the CRM, nothing else is written again.
    await runSendsOnlyTheOrganizationChange();
    expect(crm.records('Account').filter((a) => a.Name === 'Renamed While The Run Was Away')).toHaveLength(1);
    const recovered = lastJson((await runSluice(['status', flowFile, '--json'], env)).stdout) as {
      busWaiting?: { expired?: string[] };
    };
    expect(recovered.busWaiting).toBeDefined();
    expect(recovered.busWaiting?.expired).toBeUndefined();
    expect(crm.records()).toHaveLength(before);
  }, 120_000);

  it('stops ingest and run on a stream deleted and created again, and recovers after ingest --reset', async () => {
    await renameOrganization(ehr, 'Renamed Before The Stream Was Lost');
    const ingest = await runSluice(['ingest', flowFile, '--once', '--json'], env);
    expect(lastJson(ingest.stdout)).toMatchObject({ published: 1 });
    const before = crm.records().length;

    // The stream is deleted (an operator's mistake, a NATS server rebuilt) before the run read it.
    const nc = await connect({ servers: TEST_NATS_URL });
    try {
      await (await jetstreamManager(nc)).streams.delete(stream);
    } finally {
      await nc.close();
    }
    // An ingest would publish only changes since its checkpoints into the new, empty stream: refused.
    const refused = await runSluice(['ingest', flowFile, '--once', '--json'], env);
    expect(refused.code).not.toBe(0);
    expect(`${refused.stdout}${refused.stderr}`).toContain('BUS_STREAM_REPLACED');
    // Status names every stream the run would stop on; the run stops without sending.
    const status = lastJson((await runSluice(['status', flowFile, '--json'], env)).stdout) as {
      busWaiting?: { replaced?: string[] };
    };
    expect(status.busWaiting?.replaced).toEqual(['Consent', 'Organization', 'Practitioner', 'Patient']);
    const stopped = await runSluice(['run', flowFile, '--once', '--json', '--no-progress'], env);
    expect(stopped.code).not.toBe(0);
    expect(`${stopped.stdout}${stopped.stderr}`).toContain('BUS_STREAM_REPLACED');
    expect(`${stopped.stdout}${stopped.stderr}`).not.toContain('Renamed Before The Stream Was Lost');
    expect(crm.records('Account').some((a) => a.Name === 'Renamed Before The Stream Was Lost')).toBe(false);

    // The recovery: every record published into the new stream after a snapshot mark; the run reads
    // it whole and sends only what changed.
    const reset = await runSluice(['ingest', flowFile, '--once', '--json', '--reset'], env);
    expect(reset.code, reset.stderr).toBe(0);
    await runSendsOnlyTheOrganizationChange();
    expect(
      crm.records('Account').filter((a) => a.Name === 'Renamed Before The Stream Was Lost'),
    ).toHaveLength(1);
    expect(crm.records()).toHaveLength(before);
    const recovered = lastJson((await runSluice(['status', flowFile, '--json'], env)).stdout) as {
      busWaiting?: { replaced?: string[]; events?: Record<string, number> };
    };
    expect(recovered.busWaiting?.replaced).toBeUndefined();
    expect(Object.values(recovered.busWaiting?.events ?? { x: 1 }).every((n) => n === 0)).toBe(true);
  }, 120_000);
});

describe.skipIf(NATS_SKIP !== undefined || PG_SKIP !== undefined)(
  'reading and sending on different machines (bus.nats + state.postgres)',
  () => {
    const schema = testSchema('sluice_bus');
    const stream = testStream();
    let setup: LoopSetup;
    beforeAll(async () => {
      setup = await startLoopSetup({
        postgres: { url: TEST_PG_URL, schema },
        bus: { url: TEST_NATS_URL, stream },
      });
    }, 60_000);
    afterAll(async () => {
      await setup?.close();
      await deleteStreams([stream]);
      await dropSchemas([schema]);
    });

    it('ingest and run loops work side by side; a second ingester stands by and takes over', async () => {
      const { ehr, crm, flowFile, env } = setup;
      const rename = (name: string) => renameOrganization(ehr, name);
      const named = (name: string) => crm.records('Account').filter((a) => a.Name === name).length;
      const ingest = startSluice(['ingest', flowFile, '--json'], env);
      const run = startSluice(['run', flowFile, '--json', '--no-progress'], env);
      let standby: RunningSluice | undefined;
      try {
        const lines = (p: RunningSluice) => p.lines.map(json);
        await run.until(() => lines(run).some((s) => Number(s?.created) > 0), 'the first delivery');
        await ingest.until(() => lines(ingest).some((s) => s?.idle === true), 'an idle ingest cycle');
        // Everything is on the bus: the run has read it all once a cycle after this one finds nothing.
        const cycles = run.lines.length;
        await run.until(
          () => lines(run).some((s, i) => i > cycles && s?.idle === true),
          'an idle run cycle after the ingest went idle',
        );
        const accounts = crm.records('Account').length;
        expect(accounts).toBeGreaterThan(0);

        // A second ingester (another machine) stands by while the first reads.
        standby = startSluice(['ingest', flowFile, '--json'], env);
        const waiting = standby;
        await waiting.until(() => lines(waiting).some((l) => l?.standingBy === true), 'standing by');
        await rename('Read By The First Ingester');
        await run.until(() => named('Read By The First Ingester') === 1, 'the first change in the CRM');

        // The first ingester's machine dies: the second takes over, and changes keep flowing.
        expect(await ingest.kill('SIGKILL')).toBeNull();
        await waiting.until(() => lines(waiting).some((l) => l?.tookOver === true), 'the take-over');
        await rename('Read By The Second Ingester');
        await run.until(() => named('Read By The Second Ingester') === 1, 'the second change in the CRM');
        expect(crm.records('Account')).toHaveLength(accounts);
      } finally {
        await ingest.kill('SIGTERM');
        if (standby) expect(await standby.stop()).toBe(0);
        expect(await run.stop()).toBe(0);
      }
    }, 180_000);
  },
);
