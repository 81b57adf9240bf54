// Polls status.json every two seconds and fills in the page. No framework, no build step.
"use strict";

const POLL_MS = 2000;

function text(id, value) {
  const el = document.getElementById(id);
  if (el) el.textContent = value === null || value === undefined ? "\u2013" : String(value);
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "\u2013";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function formatCount(n) {
  return n === null || n === undefined ? "\u2013" : Number(n).toLocaleString("en-US");
}

// Entries per second between consecutive samples.
function rates(samples) {
  const out = [];
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i][0] - samples[i - 1][0];
    const dn = samples[i][1] - samples[i - 1][1];
    out.push(dt > 0 ? Math.max(0, dn / dt) : 0);
  }
  return out;
}

function drawChart(samples) {
  const svg = document.getElementById("chart");
  const values = rates(samples);
  const max = Math.max(1, ...values);
  const width = 1000, height = 140, pad = 16;
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => [i * step, height - pad - (v / max) * (height - 2 * pad)]);
  let markup = `<text x="6" y="14" font-size="12" fill="#5f6b7a">max ${max.toFixed(1)}/s</text>`;
  if (points.length > 1) {
    const line = points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    const area = `0,${height - pad} ${line} ${points[points.length - 1][0].toFixed(1)},${height - pad}`;
    markup += `<polygon points="${area}" fill="#2f6fdf" fill-opacity="0.15"/>`;
    markup += `<polyline points="${line}" fill="none" stroke="#2f6fdf" stroke-width="2" vector-effect="non-scaling-stroke"/>`;
  } else {
    markup += `<text x="500" y="75" font-size="13" text-anchor="middle" fill="#5f6b7a">collecting samples\u2026</text>`;
  }
  svg.innerHTML = markup;
}

function member(m, status) {
  const tr = document.createElement("tr");
  tr.dataset.id = m.id;
  const role = m.is_leader ? "leader" : m.voter ? "voter" : "learner";
  let lag;
  if (!status.lag_known) lag = "known on the leader";
  else if (m.lag === null || m.lag === undefined) lag = "not replicating";
  else lag = formatCount(m.lag) + (m.lag === 1 ? " entry" : " entries");
  const cells = [
    "node " + m.id + (m.is_self ? " (this node)" : ""),
    role,
    null,
    lag,
  ];
  cells.forEach((value, i) => {
    const td = document.createElement("td");
    if (i === 2) {
      const a = document.createElement("a");
      a.href = "http://" + m.public_addr + "/";
      a.textContent = m.public_addr;
      td.appendChild(a);
    } else {
      td.textContent = value;
    }
    if (i === 1) td.className = "role";
    if (i === 3) td.className = "lag";
    tr.appendChild(td);
  });
  return tr;
}

function render(status) {
  text("origin", status.origin);
  text("origin-detail", status.origin);
  text("node-id", status.node_id);
  const state = document.getElementById("state");
  state.textContent = status.state;
  state.className = "pill " + (status.state === "Leader" || status.state === "Follower" ? "ok" : "bad");
  document.getElementById("frozen").innerHTML =
    (status.frozen ? '<span class="pill bad">frozen</span>' : status.read_only ? '<span class="pill">read-only</span>' : "") +
    (status.development_key ? ' <span class="pill bad" title="checkpoints are signed with a generated development key">development key</span>' : "") +
    (status.tile_store === "shared" ? ' <span class="pill" title="every node serves one tile store that only the leader writes">shared tile store</span>' : "");
  text("tree-size", formatCount(status.tree_size));
  text("checkpoint-age", formatAge(status.checkpoint_age_s));
  text("throughput", status.entries_per_s_1m.toFixed(1));
  text("leader", status.leader === null ? "none" : "node " + status.leader);
  text("term", status.term);
  text("log-id", status.log_id);
  text("root", status.root);
  text("integrated-size", formatCount(status.integrated_size));
  text("sequenced-size", formatCount(status.sequenced_size));
  text("last-log-index", status.last_log_index);
  text("last-applied", status.last_applied);
  text("version", status.version);
  text("updated", new Date(status.now * 1000).toISOString());
  const body = document.getElementById("members");
  body.replaceChildren(...status.members.map((m) => member(m, status)));
  const note = document.getElementById("lag-note");
  if (status.lag_known) {
    note.textContent = "Lag: Raft entries each member is behind this leader's log.";
  } else if (status.leader_public_addr) {
    note.innerHTML = "";
    note.append("Replication lag is tracked by the leader: see ");
    const a = document.createElement("a");
    a.href = "http://" + status.leader_public_addr + "/";
    a.textContent = "its status page";
    note.append(a, ".");
  } else {
    note.textContent = "No leader is known right now.";
  }
  drawChart(status.samples);
  document.body.dataset.loaded = "true";
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("status.json", { cache: "no-store" });
    if (!response.ok) throw new Error("status.json answered " + response.status);
    render(await response.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = "Cannot reach the node: " + e.message;
    error.hidden = false;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
