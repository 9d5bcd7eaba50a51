// Drives the run view in headless Chromium through host.html, against a real retab-mcp server.
// Usage: node drive.mjs <mcp url> <screenshot dir>   (NODE_PATH must reach playwright-core;
// CHROMIUM names the browser). Prints one JSON report of what a person and the host saw; the
// test (tests/test_run_view.py) asserts on it.
import {createRequire} from "node:module";
import path from "node:path";
import {fileURLToPath} from "node:url";

const require = createRequire(import.meta.url);
const {chromium} = require("playwright-core");
const [url, shots] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let nextId = 1;

async function mcp(method, params) {
  const response = await fetch(url, {
    method: "POST",
    headers: {"Content-Type": "application/json", Accept: "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
    body: JSON.stringify({jsonrpc: "2.0", id: nextId++, method, params}),
  });
  const body = await response.json();
  if (body.error) throw new Error(body.error.message);
  return body.result;
}
const call = (name, args) => mcp("tools/call", {name, arguments: args});

const report = {};
const html = (await mcp("resources/read", {uri: "ui://retab-mcp/runs"})).contents[0].text;
const browser = await chromium.launch({executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"]});
try {
  const page = await browser.newPage({viewport: {width: 760, height: 900}});
  await page.exposeFunction("mcpCall", call);
  await page.goto("file://" + path.join(here, "host.html"));
  const view = page.frameLocator("#view");
  const light = {theme: "light", styles: {variables: {"--font-sans": "Georgia, serif"}}};

  async function show(context, input, result) {
    await page.evaluate(([h, c]) => window.mountView(h, c), [html, context]);
    return page.evaluate(([i, r]) => window.sendResult(i, r), [input, result]);
  }
  const cards = () => view.locator("li.card").evaluateAll((items) => items.map((li) => ({
    id: li.dataset.id, status: li.dataset.status, badge: li.querySelector(".badge").textContent,
    badgeColor: getComputedStyle(li.querySelector(".badge")).color, text: li.textContent,
    label: li.getAttribute("aria-label")})));
  const calls = (name) => page.evaluate((n) => window.calls.filter((c) => c.method === "tools/call" && (!n || c.params.name === n)), name);

  // The list, as the model's list_edits call returned it.
  const listInput = {limit: 20};
  const listed = await call("list_edits", listInput);
  report.first_render_ms = [];
  report.first_render_ms.push(await show(light, listInput, listed));
  report.list = await cards();
  report.font = await view.locator("body").evaluate((b) => getComputedStyle(b).fontFamily);
  await page.screenshot({path: path.join(shots, "run-view-light.png"), fullPage: true});

  // Keyboard: Tab from the top reaches every button, in order.
  const buttons = await view.locator("button").evaluateAll((all) => all.map((b) => b.getAttribute("aria-label") || b.textContent));
  const reached = [];
  await page.locator("body").focus();
  for (let i = 0; i < buttons.length + 3; i++) {
    await page.keyboard.press("Tab");
    const focused = await view.locator(":focus").evaluateAll((f) => f.map((b) => b.getAttribute("aria-label") || b.textContent));
    if (focused.length) reached.push(focused[0]);
  }
  report.buttons = buttons;
  report.reached = reached;

  // Cancel by keyboard on a running edit: Enter on its focused button.
  await view.locator('li[data-id="edt_running01"] button', {hasText: "Cancel"}).focus();
  await page.keyboard.press("Enter");
  await view.locator('li[data-id="edt_running01"][data-status="cancelled"]').waitFor({timeout: 10000});
  report.cancel_calls = (await calls("cancel_edit")).map((c) => c.params.arguments);
  report.after_cancel = (await cards()).find((c) => c.id === "edt_running01");

  // Torn down: no read after it.
  await page.evaluate(() => window.teardown());
  const before = (await calls()).length;
  await sleep(4500);
  report.calls_after_teardown = (await calls()).length - before;

  // One run the model cancelled that is still stopping: the view reads it until it stops, then stops.
  const stopping = await call("cancel_edit", {edit_id: "edt_stopping01"});
  report.stopping_first_status = stopping.structuredContent.status;
  report.first_render_ms.push(await show(light, {edit_id: "edt_stopping01"}, stopping));
  await view.locator('li[data-id="edt_stopping01"][data-status="cancelled"]').waitFor({timeout: 15000});
  const reads = (await calls("get_edit")).map((c) => c.at);
  await sleep(5000);
  report.reads_until_stopped = reads.length;
  report.read_gaps_ms = reads.slice(1).map((at, i) => Math.round(at - reads[i]));
  report.reads_after_stop = (await calls("get_edit")).length - reads.length;
  report.single = await cards();
  report.single_note = await view.locator("p.note").allTextContents();

  // Load more follows next_after.
  const small = {limit: 3};
  const page1 = await call("list_edits", small);
  report.first_render_ms.push(await show(light, small, page1));
  await page.evaluate(() => window.teardown());  // only the paging is watched here
  await view.locator("#more").click();
  await view.locator("li.card").nth(3).waitFor({timeout: 10000});
  report.more_calls = (await calls("list_edits")).map((c) => c.params.arguments);
  report.next_after = page1.structuredContent.next_after;
  report.after_more = (await cards()).map((c) => c.id);

  // A filled document given as a link opens through the host.
  const done = await call("get_edit", {edit_id: "edt_completed01"});
  const linked = structuredClone(done);
  linked.structuredContent.edit.output = {form_data: [], filled_document: {filename: "w9_filled.pdf", url: "https://files.example.com/w9_filled.pdf"}};
  report.first_render_ms.push(await show(light, {edit_id: "edt_completed01"}, linked));
  await view.locator("button", {hasText: "Open document"}).click();
  await sleep(300);
  report.links = await page.evaluate(() => window.links);

  // Dark, and 320 px wide; the list again.
  const dark = {theme: "dark"};
  const fresh = await call("list_edits", listInput);
  await show(dark, listInput, fresh);
  await page.screenshot({path: path.join(shots, "run-view-dark.png"), fullPage: true});
  report.dark_background = await view.locator("body").evaluate((b) => getComputedStyle(b).backgroundColor);
  await page.setViewportSize({width: 320, height: 900});
  await show(dark, listInput, fresh);
  await page.screenshot({path: path.join(shots, "run-view-dark-320.png"), fullPage: true});
  await show(light, listInput, fresh);
  await page.screenshot({path: path.join(shots, "run-view-light-320.png"), fullPage: true});
  report.narrow_overflow = await view.locator("html").evaluate((h) => h.scrollWidth - h.clientWidth);
  await page.evaluate(() => window.teardown());
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
