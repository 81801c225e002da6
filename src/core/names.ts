import { RefugeError } from './errors.js';

/**
 * Names of vaults, sites, machines, policies and replications: lowercase letters, digits and dashes, starting
 * with a letter or digit, at most 63 characters. They appear in URLs and in file names at the sites, so nothing
 * path-like ("../", "/") can ever get through.
 */
export const NAME_PATTERN = '^[a-z0-9][a-z0-9-]{0,62}$';
const NAME_RE = new RegExp(NAME_PATTERN);

export function isValidName(name: string): boolean {
  return NAME_RE.test(name);
}

export function assertValidName(kind: string, name: string): string {
  if (!isValidName(name)) {
    throw new RefugeError('invalid_argument', `${kind} name '${name}' is not valid`, {
      hint: 'use 1-63 lowercase letters, digits and dashes, starting with a letter or digit',
    });
  }
  return name;
}
