import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** A real HTTP server recording what webhooks POST; `status` is what it answers. */
export async function startWebhookReceiver() {
  const received: { headers: Record<string, string | string[] | undefined>; body: unknown }[] = [];
  let status = 200;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (status < 300) received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown });
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    received,
    answer(code: number) {
      status = code;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** A real SMTP server (the smtp-server library, in this process) keeping every message; `reject` makes it refuse. */
export async function startSmtpReceiver(o: { user?: string; password?: string } = {}) {
  const messages: { from: string; to: string[]; data: string }[] = [];
  let reject: { code: number; message: string } | undefined;
  const server = new SMTPServer({
    disabledCommands: ['STARTTLS'],
    authOptional: !o.user,
    onAuth(auth, _session, cb) {
      if (auth.username === o.user && auth.password === o.password) cb(null, { user: auth.username });
      else cb(new Error('invalid credentials'));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (reject) return cb(Object.assign(new Error(reject.message), { responseCode: reject.code }));
        messages.push({ from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '', to: session.envelope.rcptTo.map((r) => r.address), data: Buffer.concat(chunks).toString('utf8') });
        cb();
      });
    },
    logger: false,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.server.address() as AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    messages,
    refuse(code: number, message: string) {
      reject = { code, message };
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
