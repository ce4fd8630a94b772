'use strict'
// node-postgres (`pg`, with its own pg-cursor and pg-copy-streams) through the Portcullis
// proxy, for tests/test_pg_clients.py: one scenario per run, driven the way an
// application would use the driver. The connection comes from the environment (PGHOST,
// PGPORT, PGUSER, PGPASSWORD, PGDATABASE); argv[2] names the scenario and argv[3] is a
// JSON object of its arguments. What the scenario saw is printed as one JSON object on
// stdout: the test decides whether it is right, this script only reports.
const pg = require('pg')
const Cursor = require('pg-cursor')
const { to: copyTo } = require('pg-copy-streams')

const [scenario, rawArgs] = process.argv.slice(2)
const args = JSON.parse(rawArgs || '{}')

const ITEMS = 'SELECT id, label, qty FROM plain_items WHERE qty > $1 ORDER BY id'
const LONG_QUERY = 'SELECT count(*) FROM generate_series(1, 10000000000)'

function failure (err) {
  return { code: err.code || null, severity: err.severity || null, message: String(err.message) }
}

// the error a statement ends with, or null when it succeeds
async function errorOf (promise) {
  try {
    await promise
    return null
  } catch (err) {
    return failure(err)
  }
}

function client (extra = {}) {
  return new pg.Client({ ssl: false, connectionTimeoutMillis: 10000, ...extra })
}

const scenarios = {
  async reads (c) {
    const items = await c.query({ text: ITEMS, values: [0], rowMode: 'array' })
    const masked = await c.query({ text: 'SELECT id, email FROM customers ORDER BY id', rowMode: 'array' })
    return { rows: items.rows, customers: masked.rows }
  },

  async refusal (c) {
    await c.query('BEGIN')
    if (args.write) {
      await c.query('INSERT INTO plain_items (id, label, qty) VALUES ($1, $2, 0)', [args.marker, 'from node-postgres'])
    } else {
      await c.query('SELECT count(*) FROM plain_items')
    }
    const denied = await errorOf(c.query("SELECT pg_read_file('/etc/passwd')"))
    const after = await errorOf(c.query('SELECT 1'))
    const commit = await c.query('COMMIT')
    const usable = (await c.query('SELECT 1 AS one')).rows[0].one
    return { denied, after, commit: commit.command, usable }
  },

  async cursor (c) {
    // pg-cursor: Bind of a portal, then Execute with a row limit, inside a transaction
    await c.query('BEGIN')
    const cursor = c.query(new Cursor(ITEMS, [0], { rowMode: 'array' }))
    const batches = []
    for (;;) {
      const rows = await cursor.read(2)
      if (rows.length === 0) break
      batches.push(rows)
    }
    await cursor.close()
    await c.query('COMMIT')
    return { batches }
  },

  async copy_out (c) {
    const stream = c.query(copyTo(`COPY ${args.table} TO STDOUT`))
    const chunks = []
    try {
      for await (const chunk of stream) chunks.push(chunk)
    } catch (err) {
      return { error: failure(err) }
    }
    return { text: Buffer.concat(chunks).toString('utf8') }
  },

  async prepared (c) {
    // a named statement: parsed once, then Bind/Execute by name
    const byId = (id) => c.query({ name: 'item-label', text: 'SELECT label FROM plain_items WHERE id = $1', values: [id] })
    const labels = []
    for (const id of [1, 2]) labels.push((await byId(id)).rows[0].label)
    return { labels }
  },

  async cancel (c) {
    // Client#cancel opens its own connection and sends a CancelRequest with the
    // BackendKeyData the proxy gave this client
    const query = new pg.Query(LONG_QUERY)
    const done = errorOf(new Promise((resolve, reject) => {
      query.on('end', resolve)
      query.on('error', reject)
      c.query(query)
    }))
    await new Promise((resolve) => setTimeout(resolve, args.delay_ms || 1000))
    client().cancel(c, query)
    const error = await done
    const usable = (await c.query('SELECT 1 AS one')).rows[0].one
    return { error, usable }
  },

  async startup (c) {
    const shown = await c.query(`SHOW ${args.name}`)
    return { shown: shown.rows[0][args.name] }
  }
}

async function main () {
  const extra = {}
  if (scenario === 'startup') {
    // statement_timeout is a connection option of node-postgres, sent in the start-up
    // packet; anything else goes the way libpq sends it, in `options`
    if (args.name === 'statement_timeout') extra.statement_timeout = Number(args.value)
    else extra.options = `-c ${args.name}=${args.value}`
  }
  const c = client(extra)
  try {
    await c.connect()
  } catch (err) {
    return { refused: failure(err) }
  }
  try {
    return await scenarios[scenario](c)
  } finally {
    await c.end()
  }
}

main().then(
  (result) => { process.stdout.write(JSON.stringify(result) + '\n') },
  (err) => {
    process.stdout.write(JSON.stringify({ unexpected: failure(err) }) + '\n')
    process.exitCode = 1
  }
)
