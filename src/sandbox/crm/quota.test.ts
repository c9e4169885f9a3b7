import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CrmSandbox, startCrmSandbox } from './index.ts';
import { RollingQuota } from './quota.ts';
import { apiPath, crmFetch, crmToken, fakeClock, setCrmLimits } from './testing.ts';

const clock = fakeClock('2025-03-01T00:00:00.000Z');
let sandbox: CrmSandbox;
let token: string;

beforeAll(async () => {
  sandbox = await startCrmSandbox({ now: clock.now, dailyRequestLimit: 5, sessionSeconds: 10 * 24 * 3600 });
  token = await crmToken(sandbox);
});

beforeEach(async () => {
  await setCrmLimits(sandbox, { dailyRequestLimit: 5, used: 0 });
});

afterAll(async () => {
  await sandbox?.close();
});

const LIMIT_EXCEEDED = [{ message: 'TotalRequests Limit exceeded.', errorCode: 'REQUEST_LIMIT_EXCEEDED' }];

describe('daily API request allocation', () => {
  it('counts every API call in Sforce-Limit-Info and refuses the 6th of 5 with 403 REQUEST_LIMIT_EXCEEDED', async () => {
    const seen: (string | null)[] = [];
    const calls = [
      () => crmFetch(sandbox, token, 'GET', apiPath('/limits')),
      () => crmFetch(sandbox, token, 'GET', apiPath('/sobjects/Account/describe')),
      () => crmFetch(sandbox, token, 'GET', apiPath('/query?q=SELECT+Id+FROM+Account')),
      // A failing call counts too.
      () => crmFetch(sandbox, token, 'GET', apiPath('/sobjects/NoSuchObject__c/describe')),
      () =>
        crmFetch(sandbox, token, 'PATCH', apiPath('/sobjects/Account/External_ID_vod__c/Q1'), {
          Name: 'Clinic',
        }),
    ];
    for (const call of calls) {
      const response = await call();
      expect(response.status).toBeLessThan(500);
      expect(response.status).not.toBe(403);
      seen.push(response.headers.get('sforce-limit-info'));
    }
    expect(seen).toEqual(['1/5', '2/5', '3/5', '4/5', '5/5'].map((u) => `api-usage=${u}`));

    const refused = await crmFetch(
      sandbox,
      token,
      'PATCH',
      apiPath('/sobjects/Account/External_ID_vod__c/Q2'),
      {
        Name: 'Refused',
      },
    );
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual(LIMIT_EXCEEDED);
    expect(refused.headers.get('sforce-limit-info')).toBe('api-usage=5/5');
    // The refused write did not happen.
    expect(sandbox.records('Account').map((r) => r.External_ID_vod__c)).toEqual(['Q1']);
  });

  it('does not count calls without a valid session, the version list or the token endpoint', async () => {
    expect((await crmFetch(sandbox, undefined, 'GET', apiPath('/limits'))).status).toBe(401);
    expect((await crmFetch(sandbox, undefined, 'GET', '/services/data')).status).toBe(200);
    await crmToken(sandbox);
    const limits = await crmFetch<{ DailyApiRequests: { Max: number; Remaining: number } }>(
      sandbox,
      token,
      'GET',
      apiPath('/limits'),
    );
    expect(limits.headers.get('sforce-limit-info')).toBe('api-usage=1/5');
    expect(limits.body.DailyApiRequests).toEqual({ Max: 5, Remaining: 4 });
  });

  it('rolls the 24-hour window with the clock', async () => {
    for (let i = 0; i < 3; i++) await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    clock.advance(12 * 3600_000);
    for (let i = 0; i < 2; i++) await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    expect((await crmFetch(sandbox, token, 'GET', apiPath('/limits'))).status).toBe(403);

    // 24 h after the first three calls they leave the window; the later two still count.
    clock.advance(12 * 3600_000 + 60_000);
    const after = await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    expect(after.status).toBe(200);
    expect(after.headers.get('sforce-limit-info')).toBe('api-usage=3/5');
  });

  it('lets tests set the allocation and the count used through /__sandbox/limits', async () => {
    await setCrmLimits(sandbox, { dailyRequestLimit: 100, used: 99 });
    const last = await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    expect(last.headers.get('sforce-limit-info')).toBe('api-usage=100/100');
    expect((await crmFetch(sandbox, token, 'GET', apiPath('/limits'))).status).toBe(403);
    const control = await crmFetch(sandbox, undefined, 'GET', '/__sandbox/limits');
    expect(control.body).toEqual({ dailyRequestLimit: 100, used: 100 });
    const bad = await crmFetch(sandbox, undefined, 'POST', '/__sandbox/limits', { dailyRequestLimit: -1 });
    expect(bad.status).toBe(400);
  });
});

describe('RollingQuota', () => {
  it('keeps bounded per-minute counts and forgets requests older than 24 hours', () => {
    let now = Date.parse('2025-01-01T00:00:30Z');
    const quota = new RollingQuota(3, () => new Date(now));
    expect(quota.consume()).toEqual({ allowed: true, used: 1, max: 3 });
    now += 60_000;
    quota.consume();
    quota.consume();
    expect(quota.consume()).toEqual({ allowed: false, used: 3, max: 3 });
    now += 24 * 3600_000 - 60_000;
    // The first minute's request has left the window.
    expect(quota.state()).toEqual({ used: 2, max: 3 });
    expect(quota.set({ used: 0 })).toEqual({ used: 0, max: 3 });
  });
});
