import { describeFabricContract } from '../../helpers/fabric-contract.js';
import { FakeFabric } from '../../helpers/fake-fabric.js';

// The unit tests' stand-in must keep the contract the real providers keep (test/e2e/qemu-provider.test.ts).
describeFabricContract('fake (unit tests)', async () => {
  const provider = new FakeFabric();
  return {
    provider,
    reopen: () => provider,
    boot: { kind: 'disk' },
    guestStarted: async () => undefined,
    cleanup: async () => undefined,
  };
});
