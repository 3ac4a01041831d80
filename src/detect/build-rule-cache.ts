/**
 * Run by the build (`npm run build`, `npm install`'s prepare): parses the bundled rule files once and writes
 * dist/rule-cache.json, which spares every start the YAML parsing and the parsing of the rules' JSONata expressions
 * (see the rule cache in rule.ts, and expression-facts.ts).
 */
import { defaultRulesDir } from './index.js';
import { ruleCacheOf, writeRuleCache } from './rule.js';
import { expressionFactsOf } from './rule-cache-facts.js';

const dir = defaultRulesDir();
const cache = ruleCacheOf(dir);
cache.expressions = await expressionFactsOf(cache);
writeRuleCache(dir, undefined, cache);
process.stdout.write(`rule cache: ${Object.keys(cache.files).length} rule files parsed, ${Object.keys(cache.expressions).length} expressions\n`);
