import type { FastifyInstance } from 'fastify';
import type { CrmContext } from './context.ts';

/**
 * `POST /services/oauth2/token`: client credentials from a form body (or, as Salesforce also accepts,
 * the query string), the client authenticated by `client_id`/`client_secret` or HTTP Basic.
 */
export function registerOAuthRoutes(app: FastifyInstance, ctx: CrmContext): void {
  app.post('/services/oauth2/token', async (request, reply) => {
    const params = { ...asStrings(request.query), ...asStrings(request.body) };
    const basic = basicCredentials(request.headers.authorization);
    const outcome = ctx.oauth.token(
      {
        grantType: params.grant_type,
        clientId: basic?.clientId ?? params.client_id,
        clientSecret: basic?.clientSecret ?? params.client_secret,
      },
      ctx.origin(),
    );
    return reply
      .code(outcome.ok ? 200 : 400)
      .header('cache-control', 'no-cache,must-revalidate,max-age=0,no-store,private')
      .send(outcome.body);
  });
}

function asStrings(value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === 'string') out[k] = v;
  return out;
}

function basicCredentials(
  header: string | undefined,
): { clientId: string; clientSecret: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return undefined;
  const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return {
    clientId: formDecode(decoded.slice(0, colon)),
    clientSecret: formDecode(decoded.slice(colon + 1)),
  };
}

/** RFC 6749 §2.3.1: Basic credentials are form-encoded before base64; undecodable text is kept as is. */
function formDecode(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}
