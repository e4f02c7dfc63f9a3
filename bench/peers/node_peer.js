// graphile-worker and pg-boss as peers of bench/suite.py, on the same PostgreSQL and delivering to the same sink
// as apsched: each fire is a job with its due time (graphile-worker `run_at`, pg-boss `startAfter`), and the task
// POSTs to the sink through a keep-alive agent with the `apsched-job-id` and `apsched-scheduled-time` headers apsched
// sends, so the sink measures every system the same way.
//
//   node node_peer.js PEER burst PG_URL SINK JOBS WORKERS
//       JOBS jobs due now, loaded before any worker runs; then the workers start and it prints
//       {"released": unix seconds when they started} and runs until killed.
//   node node_peer.js PEER spread PG_URL SINK COUNT WORKERS START_US STEP_US
//       COUNT jobs, job i due at START_US + i * STEP_US; prints {"ready": unix seconds when loaded and working}.
//
// PEER is `graphile-worker` or `pg-boss`. Each runs in its fastest documented setup for this load (see SETUPS).
"use strict";

const http = require("node:http");

const QUEUE = "hook";
// Jobs inserted per statement while loading (loading is not measured).
const LOAD_BATCH = 1000;

const SETUPS = {
  // Batch fetching through the local queue and batched completion (graphile-worker 0.16+), and a 100 ms poll for
  // jobs that become due (default 2 s; NOTIFY only announces jobs due when added).
  "graphile-worker": { pollIntervalMs: 100 },
  // Its shortest poll (0.5 s, the minimum pg-boss allows) and batches fetched back to back while they come full.
  "pg-boss": { pollingIntervalSeconds: 0.5, batchSize: 32 },
};

function poster(sink, workers) {
  const url = new URL(`${sink}/hook`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  return (jobId, scheduledIso) =>
    new Promise((resolve, reject) => {
      const body = "{}";
      const request = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            "apsched-job-id": jobId,
            "apsched-scheduled-time": scheduledIso,
          },
        },
        (response) => {
          response.resume();
          response.on("end", () => (response.statusCode < 300 ? resolve() : reject(new Error(`HTTP ${response.statusCode}`))));
        },
      );
      request.on("error", reject);
      request.end(body);
    });
}

function dueTimes(mode, numbers) {
  if (mode === "burst") {
    const now = Date.now() * 1000;
    return Array.from({ length: numbers.jobs }, () => now);
  }
  return Array.from({ length: numbers.jobs }, (_, i) => numbers.startUs + i * numbers.stepUs);
}

function isoMicros(us) {
  const millis = new Date(Math.floor(us / 1000)).toISOString(); // 2026-12-02T20:00:00.123Z
  return `${millis.slice(0, -1)}${String(us % 1000).padStart(3, "0")}Z`;
}

async function graphile(pgUrl, post, workers, due) {
  const { run, makeWorkerUtils, runMigrations } = require("graphile-worker");
  await runMigrations({ connectionString: pgUrl });
  const utils = await makeWorkerUtils({ connectionString: pgUrl });
  for (let first = 0; first < due.length; first += LOAD_BATCH) {
    const specs = due.slice(first, first + LOAD_BATCH).map((us, k) => ({
      identifier: QUEUE,
      payload: { id: `peer-${first + k}`, scheduled: isoMicros(us) },
      runAt: new Date(us / 1000),
      maxAttempts: 25,
    }));
    await utils.addJobs(specs);
  }
  await utils.release();
  const started = Date.now() / 1000;
  await run({
    connectionString: pgUrl,
    concurrency: workers,
    pollInterval: SETUPS["graphile-worker"].pollIntervalMs,
    noHandleSignals: false,
    logger: quietLogger(),
    preset: { worker: { localQueue: { size: workers + 1 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    taskList: { [QUEUE]: async (payload) => post(payload.id, payload.scheduled) },
  });
  return started;
}

function quietLogger() {
  const { Logger } = require("graphile-worker");
  return new Logger(() => (level, message) => {
    if (level === "error") console.error(message);
  });
}

async function pgBoss(pgUrl, post, workers, due) {
  const { PgBoss } = require("pg-boss");
  const boss = new PgBoss({ connectionString: pgUrl, max: workers });
  boss.on("error", (error) => console.error(error));
  await boss.start();
  await boss.createQueue(QUEUE);
  for (let first = 0; first < due.length; first += LOAD_BATCH) {
    const jobs = due.slice(first, first + LOAD_BATCH).map((us, k) => ({
      data: { id: `peer-${first + k}`, scheduled: isoMicros(us) },
      startAfter: new Date(us / 1000),
      retryLimit: 25,
    }));
    await boss.insert(QUEUE, jobs);
  }
  const setup = SETUPS["pg-boss"];
  const started = Date.now() / 1000;
  // Workers each fetching a batch and delivering it concurrently: WORKERS deliveries in flight at most.
  const pollers = Math.max(1, Math.floor(workers / setup.batchSize));
  await boss.work(
    QUEUE,
    {
      localConcurrency: pollers,
      batchSize: setup.batchSize,
      pollingIntervalSeconds: setup.pollingIntervalSeconds,
      burstWhenBatchFull: true,
    },
    async (jobs) => {
      await Promise.all(jobs.map((job) => post(job.data.id, job.data.scheduled)));
    },
  );
  return started;
}

async function main() {
  const [peer, mode, pgUrl, sink, ...rest] = process.argv.slice(2);
  const numbers = rest.map(Number);
  const [jobs, workers, startUs, stepUs] = numbers;
  if (!SETUPS[peer] || !["burst", "spread"].includes(mode) || numbers.some(Number.isNaN)) {
    console.error("usage: node node_peer.js graphile-worker|pg-boss burst|spread PG_URL SINK JOBS WORKERS [START_US STEP_US]");
    process.exit(2);
  }
  const post = poster(sink, workers);
  const due = dueTimes(mode, { jobs, startUs, stepUs });
  const start = peer === "graphile-worker" ? graphile : pgBoss;
  const started = await start(pgUrl, post, workers, due);
  console.log(JSON.stringify(mode === "burst" ? { released: started } : { ready: started }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
