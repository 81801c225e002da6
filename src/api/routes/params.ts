import { Type } from 'typebox';
import { ID_PATTERN } from '../../core/ids.js';
import { Name } from '../../protocol/schemas.js';

/** Path parameter schemas shared by the routes; names and ids are validated before any lookup. */
export const VaultParams = Type.Object({ vault: Name });
export const named = <K extends string>(key: K) => Type.Object({ vault: Name, ...({ [key]: Name } as Record<K, typeof Name>) });
export const Id = Type.String({ pattern: ID_PATTERN });
export { Name };
