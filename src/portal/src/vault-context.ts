import { createContext, useContext } from 'react';

/** The vault the portal shows (chosen in the header when there are several). */
export const VaultContext = createContext<string>('');
export const useVault = (): string => useContext(VaultContext);
