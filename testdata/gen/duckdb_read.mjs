// Reads a Parquet file with DuckDB (an implementation independent of
// parquet-go) and prints its rows as JSON, so Go tests can check that what
// darwinlm writes is read back the same by another engine.
//
//   npm install @duckdb/node-api@1.5.6-r.1
//   node testdata/gen/duckdb_read.mjs train/testdata/train_log.parquet > train/testdata/train_log.duckdb.json
import { DuckDBInstance } from '@duckdb/node-api';

const path = process.argv[2];
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const reader = await con.runAndReadAll(`SELECT * FROM read_parquet('${path.replaceAll("'", "''")}')`);
const rows = reader.getRowObjectsJson();
const schema = await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${path.replaceAll("'", "''")}')`);
console.log(JSON.stringify({ engine: 'duckdb @duckdb/node-api 1.5.6-r.1', columns: schema.getRowObjectsJson(), rows }, null, 1));
