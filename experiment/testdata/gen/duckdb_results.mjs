// Reads the committed results Parquet files with DuckDB (an engine
// independent of parquet-go) and writes, per file, its columns and types,
// its rows and its key-value metadata as JSON into experiment/testdata/duckdb/,
// so TestResultsReadByDuckDB can check what darwinlm wrote without Node.
//
//   (cd /tmp/duck && npm install @duckdb/node-api@1.5.6-r.1)
//   DUCKDB_NODE_MODULES=/tmp/duck/node_modules experiment/testdata/gen/duckdb_results.sh
//
// Usage here: node duckdb_results.mjs OUT_DIR FILE.parquet...
import { DuckDBInstance } from '@duckdb/node-api';
import { writeFileSync } from 'node:fs';

const [outDir, ...files] = process.argv.slice(2);
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const q = (p) => `'${p.replaceAll("'", "''")}'`;
for (const path of files) {
  const rows = (await con.runAndReadAll(`SELECT * FROM read_parquet(${q(path)})`)).getRowObjectsJson();
  const columns = (await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${q(path)})`)).getRowObjectsJson()
    .map((c) => ({ name: c.column_name, type: c.column_type }));
  const kv = (await con.runAndReadAll(
    `SELECT decode(key) AS key, decode(value) AS value FROM parquet_kv_metadata(${q(path)}) ORDER BY key`)).getRowObjectsJson();
  const count = (await con.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM read_parquet(${q(path)})`)).getRowObjectsJson()[0].n;
  // results/<experiment>/<profile>/<file>.parquet -> <experiment>__<profile>__<file>.json
  const parts = path.split('/');
  const name = parts.slice(-3).join('__').replace(/\.parquet$/, '.json');
  const out = { engine: 'duckdb @duckdb/node-api 1.5.6-r.1', source: parts.slice(-4).join('/'), count, columns, kv, rows };
  writeFileSync(`${outDir}/${name}`, JSON.stringify(out, null, 1) + '\n');
}
