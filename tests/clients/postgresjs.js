'use strict'
// postgres.js (`postgres` on npm) through the Portcullis proxy, for
// tests/test_pg_clients.py: one scenario per run, with the driver's own APIs. The
// connection comes from the environment (PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE); argv[2] names the scenario and argv[3] is a JSON object of its arguments.
// What the scenario saw is printed as one JSON object on stdout; the test judges it.
const postgres = require('postgres')

const [scenario, rawArgs] = process.argv.slice(2)
const args = JSON.parse(rawArgs || '{}')

function failure (err) {
  return { code: err.code || null, severity: err.severity || null, message: String(err.message) }
}

async function errorOf (promise) {
  try {
    await promise
    return null
  } catch (err) {
    return failure(err)
  }
}

const asArrays = (rows) => rows.map((row) => Object.values(row))

const scenarios = {
  async reads (sql) {
    const items = await sql`SELECT id, label, qty FROM plain_items WHERE qty > ${0} ORDER BY id`
    const customers = await sql`SELECT id, email FROM customers ORDER BY id`
    return { rows: asArrays(items), customers: asArrays(customers) }
  },

  async refusal (sql) {
    // BEGIN and COMMIT as statements (max: 1 makes that safe): sql.begin() would itself roll
    // back after any error in the block, and this asks what the COMMIT does
    await sql`BEGIN`
    if (args.write) {
      await sql`INSERT INTO plain_items (id, label, qty) VALUES (${args.marker}, 'from postgres.js', 0)`
    } else {
      await sql`SELECT count(*) FROM plain_items`
    }
    const denied = await errorOf(sql`SELECT pg_read_file('/etc/passwd')`)
    const after = await errorOf(sql`SELECT 1`)
    const commit = await sql`COMMIT`
    const usable = (await sql`SELECT 1 AS one`)[0].one
    return { denied, after, commit: commit.command, usable }
  },

  async cursor (sql) {
    const batches = []
    const query = sql`SELECT id, label, qty FROM plain_items WHERE qty > ${0} ORDER BY id`
    for await (const rows of query.cursor(2)) batches.push(asArrays(rows))
    return { batches }
  },

  async copy_out (sql) {
    const chunks = []
    try {
      const stream = await sql.unsafe(`COPY ${args.table} TO STDOUT`).readable()
      for await (const chunk of stream) chunks.push(chunk)
    } catch (err) {
      return { error: failure(err) }
    }
    return { text: Buffer.concat(chunks).toString('utf8') }
  },

  async prepared (sql) {
    // prepare: true (the default) names each statement and reuses it by name
    const labels = []
    for (const id of [1, 2]) labels.push((await sql`SELECT label FROM plain_items WHERE id = ${id}`)[0].label)
    return { labels }
  },

  async cancel (sql) {
    const query = sql`SELECT count(*) FROM generate_series(1, 10000000000)`
    const done = errorOf(query)
    await new Promise((resolve) => setTimeout(resolve, args.delay_ms || 1000))
    await query.cancel()
    const error = await done
    const usable = (await sql`SELECT 1 AS one`)[0].one
    return { error, usable }
  },

  async startup (sql) {
    // postgres.js connects at the first query: a refusal at start-up shows up here
    let shown
    try {
      shown = await sql.unsafe(`SHOW ${args.name}`)
    } catch (err) {
      return { refused: failure(err) }
    }
    return { shown: shown[0][args.name] }
  }
}

async function main () {
  const connection = scenario === 'startup' ? { [args.name]: String(args.value) } : {}
  const sql = postgres({ ssl: false, max: 1, connect_timeout: 10, connection, onnotice: () => {} })
  try {
    return await scenarios[scenario](sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

main().then(
  (result) => { process.stdout.write(JSON.stringify(result) + '\n') },
  (err) => {
    process.stdout.write(JSON.stringify({ unexpected: failure(err) }) + '\n')
    process.exitCode = 1
  }
)
