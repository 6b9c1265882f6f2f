/* reengage tracking snippet (docs/web.md): nothing is stored or sent before consent(true);
 * with Global Privacy Control on, nothing ever. No dependencies. Under 10 KB: tabs, and the
 * wrapper's body not indented. */
(() => {
"use strict";
const w = window;
const d = document;
const nav = navigator;
const loc = location;
const waiting = w.reengage;
if (waiting && waiting.loaded) return; // loaded twice: the first copy rules

const script = d.currentScript;
const data = (script && script.dataset) || {};
const base = script && script.src ? new URL(script.src, loc.href).origin : loc.origin;
const cfg = {
	endpoint: data.endpoint || base + "/t/events",
	cookieName: data.cookieName || "reengage_id",
	cookieDomain: data.cookieDomain || "",
	autoPageView: data.autoPageView !== "false",
	flushInterval: Number(data.flushInterval) || 5000,
	batchSize: Number(data.batchSize) || 20,
	onsite: data.onsite === "true",
};
const ID_AGE = 395 * 86400; // 13 months, never extended
const SESSION_AGE = 1800; // s
const MAX_QUEUE = 200;
const gpc = nav.globalPrivacyControl === true;

let consent = null; // null: not yet, events wait in memory
let queue = [];
let customerId = null;
let timer = null;
let warned = false;
const tries = new WeakMap();

const readCookie = (name) => {
	const found = d.cookie.split("; ").find((part) => part.startsWith(name + "="));
	return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
};
const writeCookie = (name, value, maxAge) => {
	let text = `${name}=${encodeURIComponent(value)}; Path=/; Max-Age=${maxAge}; SameSite=Lax`;
	if (cfg.cookieDomain) text += `; Domain=${cfg.cookieDomain}`;
	if (loc.protocol === "https:") text += "; Secure";
	d.cookie = text;
};
const visitCookie = () => cfg.cookieName + "_s";
const forget = () => {
	writeCookie(cfg.cookieName, "", 0);
	writeCookie(visitCookie(), "", 0);
};

const rnd = () => crypto.getRandomValues(new Uint8Array(1))[0];
const uuid = () =>
	crypto.randomUUID
		? crypto.randomUUID()
		: "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
				(c ^ (rnd() & (15 >> (c / 4)))).toString(16),
			);
const valid = (id) => !!id && /^[\w-]{8,64}$/.test(id);
const anonymousId = () => {
	let id = readCookie(cfg.cookieName);
	if (!valid(id)) writeCookie(cfg.cookieName, (id = uuid()), ID_AGE);
	return id;
};

const hostOf = (url) => (url ? new URL(url).hostname : "");
// the visit's source (docs/formats.md) by utm_* or referrer
const sourceOf = () => {
	const q = new URLSearchParams(loc.search);
	const medium = (q.get("utm_medium") || "").toLowerCase();
	if (/e-?mail|newsletter/.test(medium)) return "email";
	if (/^sms|text/.test(medium)) return "sms";
	if (/push/.test(medium)) return "push";
	if (/cp[cmv]|ppc|paid|display|banner|^ads?$/.test(medium) || q.has("gclid")) return "ads";
	if (/social/.test(medium) || q.has("fbclid")) return "social";
	const ref = hostOf(d.referrer);
	const host = (ref === loc.hostname ? "" : ref) || q.get("utm_source") || "";
	const name = `.${host.toLowerCase()}.`;
	if (!host) return "direct";
	if (/\.(google|bing|duckduckgo|yahoo|baidu|yandex|ecosia|qwant)\./.test(name)) return "search";
	const social = /\.(facebook|instagram|linkedin|pinterest|tiktok|youtube|reddit)\./;
	if (social.test(name) || /\.(t\.co|x\.com)\.$/.test(name)) return "social";
	return "referral";
};
const device = () => {
	const width = w.innerWidth || d.documentElement.clientWidth || 1280;
	return width < 768 ? "mobile" : width < 1024 ? "tablet" : "desktop";
};

const make = (type, fields, properties) => {
	const event = { event_id: uuid(), type, occurred_at: new Date().toISOString(), device: device() };
	if (customerId) event.customer_id = customerId;
	Object.assign(event, fields);
	if (properties && typeof properties === "object") event.properties = { ...properties };
	return event;
};
// the cookie id and the visit; a new visit begins with session_start
const stamp = (event, out) => {
	let [sid, source] = (readCookie(visitCookie()) || "").split(".");
	const ids = () => ({ anonymous_id: anonymousId(), session_id: sid, source });
	if (!valid(sid)) {
		sid = uuid();
		source = sourceOf();
		out.push(Object.assign(make("session_start", { occurred_at: event.occurred_at }), ids()));
	}
	writeCookie(visitCookie(), `${sid}.${source}`, SESSION_AGE);
	out.push(Object.assign(event, ids()));
};
const record = (type, fields, properties) => {
	if (gpc || consent === false) return;
	const event = make(type, fields, properties);
	if (!consent) {
		if (queue.length < MAX_QUEUE) queue.push(event); // memory only
		return;
	}
	stamp(event, queue);
	schedule();
};

const schedule = () => {
	if (queue.length >= cfg.batchSize) flush();
	else if (!timer && queue.length) timer = setTimeout(flush, cfg.flushInterval);
};
const warn = (...what) => (console.warn("reengage:", ...what), true);
const retry = (batch) => {
	for (const event of batch) {
		const n = (tries.get(event) || 0) + 1;
		if (!consent || n > 2 || queue.length >= MAX_QUEUE) continue;
		tries.set(event, n);
		queue.push(event);
	}
	warned = warned || warn("no answer: is this site in the collector's allowed_origins?");
	schedule();
};
// by fetch (text/plain: no preflight), by sendBeacon when the page goes
const flush = (leaving) => {
	clearTimeout(timer);
	timer = null;
	if (!consent || gpc) return;
	while (queue.length) {
		const batch = queue.splice(0, cfg.batchSize);
		const body = JSON.stringify({ events: batch });
		const blob = () => new Blob([body], { type: "text/plain" });
		if (leaving === true && nav.sendBeacon && nav.sendBeacon(cfg.endpoint, blob())) continue;
		const headers = { "Content-Type": "text/plain" };
		fetch(cfg.endpoint, { method: "POST", body, keepalive: true, credentials: "omit", headers })
			.then((answer) => {
				if (answer.status >= 500 || answer.status === 429) return retry(batch);
				if (!answer.ok) return warn("the collector refused a batch:", answer.status);
				return answer.json().then((r) => r.rejected && r.rejected.length && warn(r.rejected));
			})
			.catch(() => retry(batch));
	}
};

// on-site messages (docs/retargeting.md), opt-in: once a page after consent; exit intent
// and welcome back once a tab session. Their HTML records clicks
let pid = "";
let asked;
const show = (p, into) => {
	into.insertAdjacentHTML("beforeend", p.html);
	record("onsite_impression", {}, p.properties);
	flush();
};
const place = (p) => {
	const at = "reengage_" + p.placement;
	const leave = (e) => {
		if (sessionStorage[at] || (e && (e.relatedTarget || e.clientY > 0))) return;
		sessionStorage[at] = d.removeEventListener("mouseout", leave) || 1;
		show(p, d.body);
	};
	const box = d.querySelector(`[data-reengage="${p.placement}"]`);
	if (p.placement === "recommendations") box && show(p, box);
	else if (p.placement === "exit_intent") d.addEventListener("mouseout", leave);
	else leave();
};
const onsite = () => {
	if (asked || !consent || !cfg.onsite) return;
	const q = new URLSearchParams({ aid: anonymousId(), pid, cid: customerId || "" });
	asked = fetch(`${base}/t/onsite?${q}`)
		.then((r) => r.json())
		.then((r) => r.placements.forEach(place))
		.catch(() => 0);
};

const qty = (n, properties) => ({ quantity: Number(n) || 1, ...properties });
const api = {
	loaded: true,
	gpc,
	init(options) {
		Object.assign(cfg, options);
	},
	// true: the cookie is set, events go out; false: cookie and waiting events go
	consent(yes) {
		if (gpc || !yes) {
			consent = false;
			queue = [];
			customerId = null;
			flush(); // stops the timer
			return forget();
		}
		if (consent) return;
		consent = true;
		const waited = queue;
		queue = [];
		for (const event of waited) stamp(event, queue);
		schedule();
		setTimeout(onsite);
	},
	consented: () => consent === true,
	track(type, properties, fields = {}) {
		const extra = {};
		if (fields.productId != null) extra.product_id = String(fields.productId);
		if (fields.durationS != null) extra.duration_s = Number(fields.durationS);
		record(String(type), extra, properties);
	},
	page(properties) {
		const ref = hostOf(d.referrer);
		const p = { url: loc.origin + loc.pathname, title: d.title };
		if (ref && ref !== loc.hostname) p.referrer = ref;
		record("page_view", {}, { ...p, ...properties });
	},
	productView(id, properties) {
		pid = String(id);
		api.track("product_view", properties, { productId: id });
	},
	addToCart(id, quantity, price, properties) {
		const p = qty(quantity, properties);
		if (price != null) p.price = Number(price);
		api.track("add_to_cart", p, { productId: id });
	},
	removeFromCart(id, quantity, properties) {
		api.track("remove_from_cart", qty(quantity, properties), { productId: id });
	},
	checkout(properties) {
		api.track("checkout_start", properties);
	},
	search(query, properties) {
		api.track("search", { query: String(query), ...properties });
	},
	// a known visitor (logged in, subscribed): the cookie's history joins the contact
	identify(who) {
		const id = who && (who.customerId ?? who.customer_id);
		const email = who && who.email;
		if (id == null && !email) return;
		if (id != null) customerId = String(id);
		record("identify", {}, email ? { email: String(email).trim() } : {});
		flush();
	},
	// logged out: a new cookie id, the next person is not joined to them
	reset() {
		customerId = null;
		if (!consent) return;
		flush();
		forget();
		anonymousId();
	},
	flush: () => flush(false),
	push(command) {
		if (typeof command === "function") return command(api);
		const [name, ...args] = Array.from(command || []);
		if (name !== "push" && typeof api[name] === "function") return api[name](...args);
		warn("unknown command", name);
	},
};

if (gpc) forget(); // set before the signal was on
else if (valid(readCookie(cfg.cookieName))) consent = true; // given earlier
const commands = Array.isArray(waiting) ? waiting : [];
const isInit = (c) => !!c && c[0] === "init";
commands.filter(isInit).forEach(api.push);
w.reengage = api;
if (cfg.autoPageView) api.page();
commands.filter((c) => !isInit(c)).forEach(api.push);
setTimeout(onsite); // after the page's productView
d.addEventListener("visibilitychange", () => d.visibilityState === "hidden" && flush(true));
w.addEventListener("pagehide", () => flush(true));
})();
