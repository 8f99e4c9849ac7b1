// Drives the admin page in headless Chromium for tests/integration/test_page.py.
//   node page_driver.cjs ADMIN_URL
// Environment: EGRESSD_PLAYWRIGHT (the folder holding node_modules/playwright-core),
// EGRESSD_CHROMIUM (the browser, default /usr/bin/chromium).
// Reads one command per line on stdin and answers one line on stdout, "ok ..." or
// "error ...", so that the Python test holds clients between steps:
//   answer HOST allow|deny once|hour|always host|host_port|domain
//       waits for HOST's row among the pending questions, picks the choices, clicks
//   remembered NAME       waits for NAME among the remembered answers
//   forget NAME           clicks NAME's Forget button, waits for the row to go
//   gone HOST             waits until HOST is no longer pending
//   token VALUE           types VALUE into the page's token form (admin.token_file)
//   screenshot PATH       a full-page PNG
//   quit
// Every wait is bounded (STEP_MS); a failed step answers "error" and the driver goes on.
"use strict";
const path = require("path");
const readline = require("readline");

const STEP_MS = 10000;
const pw = require(path.join(process.env.EGRESSD_PLAYWRIGHT || path.join(__dirname, ".npm"),
                             "node_modules", "playwright-core"));

async function main() {
  const url = process.argv[2];
  const args = ["--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage"];
  if (process.getuid && process.getuid() === 0) args.push("--no-sandbox");  // Chromium refuses root otherwise
  const browser = await pw.chromium.launch({
    executablePath: process.env.EGRESSD_CHROMIUM || "/usr/bin/chromium", headless: true, args, timeout: 30000,
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    // A CSP violation or a script error is a failure of the page, reported at quit.
    page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
    page.on("pageerror", (e) => problems.push("pageerror: " + e.message));
    page.setDefaultTimeout(STEP_MS);
    await page.goto(url, { waitUntil: "load" });
    console.log("ok ready " + (await page.title()));
    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) {
      const [cmd, ...rest] = line.trim().split(/\s+/);
      try {
        if (cmd === "quit") {
          rl.close();
          break;
        }
        console.log("ok " + (await step(page, cmd, rest)));
      } catch (e) {
        console.log("error " + String(e.message || e).split("\n")[0]);
      }
    }
  } finally {
    await browser.close();
  }
  console.log(problems.length ? "problems " + JSON.stringify(problems) : "ok clean");
  process.exit(0);  // stdin may still be open
}

async function step(page, cmd, rest) {
  if (cmd === "answer") {
    const [host, decision, remember, scope] = rest;
    const row = page.locator(`#pending tr[data-host="${host}"]`);
    await row.waitFor({ state: "visible" });
    await row.getByLabel("Remember", { exact: true }).selectOption(remember);
    await row.getByLabel("For", { exact: true }).selectOption(scope);
    await row.getByRole("button", { name: decision === "allow" ? /^Allow / : /^Deny / }).click();
    await row.waitFor({ state: "detached" });
    return (await page.locator("#status").textContent()) || "";
  }
  if (cmd === "gone") {
    await page.locator(`#pending tr[data-host="${rest[0]}"]`).waitFor({ state: "detached" });
    return rest[0];
  }
  if (cmd === "pending") {
    await page.locator(`#pending tr[data-host="${rest[0]}"]`).waitFor({ state: "visible" });
    return (await page.locator(`#pending tr[data-host="${rest[0]}"]`).innerText()).replace(/\s+/g, " ");
  }
  if (cmd === "remembered") {
    const row = page.locator(`#decisions tr[data-name="${rest[0]}"]`);
    await row.waitFor({ state: "visible" });
    return (await row.innerText()).replace(/\s+/g, " ");
  }
  if (cmd === "forget") {
    const row = page.locator(`#decisions tr[data-name="${rest[0]}"]`);
    await row.getByRole("button", { name: "Forget " + rest[0] }).click();
    await row.waitFor({ state: "detached" });
    return rest[0];
  }
  if (cmd === "token") {
    await page.locator("#token-form").waitFor({ state: "visible" });
    await page.getByLabel("Admin token (admin.token_file)").fill(rest[0]);
    await page.getByRole("button", { name: "Use token" }).click();
    await page.locator("#token-form").waitFor({ state: "hidden" });
    return "token";
  }
  if (cmd === "screenshot") {
    await page.screenshot({ path: rest[0], fullPage: true });
    return rest[0];
  }
  throw new Error("unknown command " + cmd);
}

main().catch((e) => {
  console.log("error " + String(e.message || e).split("\n")[0]);
  process.exit(1);
});
