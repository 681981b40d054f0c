// The TypeScript / Node.js worker printed in workflow-graph's "Creating Workers" guide
// (shared/seeds/001_…) as JavaScript: the type annotations stripped by hand (`path: string`,
// `body?: unknown`, `err: any`), nothing else changed. Node 20 has no --experimental-strip-types.
import { execSync } from "node:child_process";

const SERVER = process.env.SERVER_URL || "http://localhost:3000";
const WORKER_ID = `node-${Math.random().toString(36).slice(2, 10)}`;
const LABELS = (process.env.WORKER_LABELS || "node").split(",");

async function post(path, body) {
  return fetch(`${SERVER}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
}

// Register
await post("/api/workers/register", {
  worker_id: WORKER_ID,
  labels: LABELS,
});

while (true) {
  const resp = await post("/api/jobs/claim", {
    worker_id: WORKER_ID,
    labels: LABELS,
    lease_ttl_secs: 60,
  });
  const claim = await resp.json();
  if (!claim) {
    await new Promise((r) => setTimeout(r, 2000));
    continue;
  }

  const { job, lease } = claim;
  console.log(`Claimed: ${job.job_id}`);

  // Heartbeat interval
  const hb = setInterval(() => {
    post(`/api/jobs/${lease.lease_id}/heartbeat`);
  }, 10_000);

  try {
    const stdout = execSync(job.command, {
      encoding: "utf-8",
      timeout: 300_000,
    });
    await post(`/api/jobs/${lease.lease_id}/logs`, {
      chunks: [
        {
          workflow_id: job.workflow_id,
          job_id: job.job_id,
          sequence: 0,
          data: stdout,
          timestamp_ms: Date.now(),
          stream: "stdout",
        },
      ],
    });
    await post(`/api/jobs/${lease.lease_id}/complete`, { outputs: {} });
  } catch (err) {
    await post(`/api/jobs/${lease.lease_id}/fail`, {
      error: err.message.slice(0, 4096),
      retryable: true,
    });
  } finally {
    clearInterval(hb);
  }
}
