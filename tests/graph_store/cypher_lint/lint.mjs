// Lints Cypher statements with Neo4j's own parser and semantic analysis.
// stdin:  [{"name": str, "query": str, "params": [str]}]
// stdout: [{"name": str, "parameters": [str], "diagnostics": [{"severity": 1|2, "message": str}]}]
// Severity 1 is an error (syntax, undefined variable, undeclared parameter), 2 a warning.
import { lintCypherQuery, parseParameters } from '@neo4j-cypher/language-support';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const statements = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const results = statements.map(({ name, query, params }) => {
  // Declaring exactly the supplied parameters makes the linter flag any other `$name` as an error.
  const dbSchema = { parameters: Object.fromEntries(params.map((p) => [p, null])) };
  const { diagnostics } = lintCypherQuery(query, dbSchema, { consoleCommandsEnabled: false });
  return {
    name,
    parameters: parseParameters(query, false),
    diagnostics: diagnostics.map((d) => ({ severity: d.severity, message: d.message })),
  };
});
process.stdout.write(JSON.stringify(results));
