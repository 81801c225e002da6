import { join } from 'node:path';
import { CdpCapture } from '../../../src/agent/capture/cdp-capture.js';
import { NBD, RawNbdClient } from '../../helpers/agent/raw-nbd-client.js';
import { describeCaptureContract, type DiskName } from './capture-contract.js';

describeCaptureContract('cdp', async ({ dir, images }) => {
  const names = Object.keys(images) as DiskName[];
  const options = {
    disks: names.map((name) => ({ name, path: images[name], socketPath: join(dir, `${name}.sock`) })),
    stateDir: join(dir, 'state'),
  };
  let mode = new CdpCapture(options);
  let clients: Partial<Record<DiskName, RawNbdClient>> = {};
  let handle = 0n;
  const client = async (disk: DiskName) => (clients[disk] ??= await RawNbdClient.attach(join(dir, `${disk}.sock`)));
  const disconnect = () => {
    for (const c of Object.values(clients)) c.close();
    clients = {};
  };
  return {
    get mode() {
      return mode;
    },
    async write(disk, offset, data) {
      const c = await client(disk);
      c.request(NBD.cmd.write, ++handle, offset, data.length, 0, data);
      const r = await c.reply();
      if (r.error !== 0) throw new Error(`NBD write failed with errno ${r.error}`);
    },
    async restart() {
      disconnect();
      await mode.stop();
      mode = new CdpCapture(options);
      await mode.start();
    },
    async close() {
      disconnect();
      await mode.stop();
    },
  };
});
