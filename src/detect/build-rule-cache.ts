/**
 * Run by the build (`npm run build`, `npm install`'s prepare): parses the bundled rule files once and writes
 * dist/rule-cache.json, which spares every start the YAML parsing (see the rule cache in rule.ts).
 */
import { defaultRulesDir } from './index.js';
import { writeRuleCache } from './rule.js';

const cache = writeRuleCache(defaultRulesDir());
process.stdout.write(`rule cache: ${Object.keys(cache.files).length} rule files parsed\n`);
