// The sample shop: a product list, product pages, a cart, a login form and a consent banner,
// telling reengage what happens through its tracking snippet (docs/web.md).

// The command queue: calls made before tracker.js has loaded wait here and run when it does.
// reengage.push works before and after; the named methods only after.
window.reengage = window.reengage || [];
const track = (...command) => window.reengage.push(command);

const PRODUCTS = [
  { id: "sku-espresso", title: "Espresso cups (set of 4)", price: 24.0 },
  { id: "sku-moka", title: "Moka pot, 6 cups", price: 39.9 },
  { id: "sku-beans", title: "Coffee beans, 1 kg", price: 18.5 },
  { id: "sku-grinder", title: "Hand grinder", price: 64.0 },
];
const byId = (id) => PRODUCTS.find((p) => p.id === id);
const $ = (selector) => document.querySelector(selector);

// The shop's own memory (its choice of consent, the cart, who is logged in) is in
// localStorage: strictly necessary for the shop to work, and never sent anywhere.
const store = {
  get: (key, fallback) => JSON.parse(localStorage.getItem("shop-" + key) || "null") ?? fallback,
  set: (key, value) => localStorage.setItem("shop-" + key, JSON.stringify(value)),
  drop: (key) => localStorage.removeItem("shop-" + key),
};

// ---- consent ----
const banner = $("#consent-banner");
const choose = (yes) => {
  store.set("consent", yes);
  track("consent", yes);
  banner.hidden = true;
};
$("#consent-accept").addEventListener("click", () => choose(true));
$("#consent-refuse").addEventListener("click", () => choose(false));
$("#privacy").addEventListener("click", (e) => {
  e.preventDefault();
  banner.hidden = false;
});
$("#gpc-note").hidden = navigator.globalPrivacyControl !== true;
const chosen = store.get("consent", null);
if (chosen === null) banner.hidden = false;
else track("consent", chosen); // keeps the snippet in step with the shop's record

// ---- cart ----
const cart = () => store.get("cart", {});
const showCart = () => {
  const count = Object.values(cart()).reduce((a, b) => a + b, 0);
  $("#cart-count").textContent = `Cart: ${count}`;
};
const addToCart = (product) => {
  const c = cart();
  c[product.id] = (c[product.id] || 0) + 1;
  store.set("cart", c);
  track("addToCart", product.id, 1, product.price, { title: product.title });
  showCart();
};
const removeFromCart = (product) => {
  const c = cart();
  if (!c[product.id]) return;
  c[product.id] -= 1;
  if (!c[product.id]) delete c[product.id];
  store.set("cart", c);
  track("removeFromCart", product.id, 1);
  showCart();
};
showCart();

// ---- the product list (index.html) ----
const list = $("#products");
if (list) {
  for (const product of PRODUCTS) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `product.html?id=${encodeURIComponent(product.id)}`;
    link.textContent = product.title;
    link.className = "product-link";
    const price = document.createElement("p");
    price.className = "price";
    price.textContent = `€ ${product.price.toFixed(2)}`;
    const add = document.createElement("button");
    add.type = "button";
    add.textContent = "Add to cart";
    add.className = "add-to-cart";
    add.dataset.product = product.id;
    add.addEventListener("click", () => addToCart(product));
    item.append(link, price, add);
    list.append(item);
  }
  $("#search").addEventListener("submit", (e) => {
    e.preventDefault();
    const query = new FormData(e.target).get("q").trim();
    if (query) track("search", query);
  });
}

// ---- a product page (product.html?id=...) ----
if ($("#product")) {
  const product = byId(new URLSearchParams(location.search).get("id")) || PRODUCTS[0];
  document.title = `Bottega Esempio: ${product.title}`;
  $("#product-title").textContent = product.title;
  $("#product-price").textContent = `€ ${product.price.toFixed(2)}`;
  track("productView", product.id, { title: product.title, price: product.price });
  $("#add-to-cart").addEventListener("click", () => addToCart(product));
  $("#remove-from-cart").addEventListener("click", () => removeFromCart(product));
  $("#checkout").addEventListener("click", () => {
    const c = cart();
    const value = Object.entries(c).reduce((sum, [id, n]) => sum + byId(id).price * n, 0);
    track("checkout", { value: Math.round(value * 100) / 100, items: Object.keys(c).length });
  });
}

// ---- logging in (index.html) ----
const showUser = () => {
  const user = store.get("user", null);
  $("#who").textContent = user ? `Hello, ${user.customerId}` : "";
  if (!$("#login")) return;
  $("#login").hidden = !!user;
  $("#logged-in").hidden = !user;
  $("#logged-in-as").textContent = user ? user.customerId : "";
};
if ($("#login")) {
  $("#login").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const user = { customerId: form.get("customer_id").trim() };
    const email = form.get("email").trim();
    if (email) user.email = email;
    store.set("user", user);
    // the visitor is known now: their browsing so far joins their contact in reengage
    track("identify", user);
    showUser();
  });
  $("#logout").addEventListener("click", () => {
    store.drop("user");
    track("reset"); // the next person on this browser gets a new cookie id
    showUser();
  });
}
showUser();
