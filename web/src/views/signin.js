// Sign in with a team token: checked with GET /api/v1/me before it is kept
// (in sessionStorage: gone when the tab closes, never in a URL).
import { get, setToken } from "../api.js";
import { h, fill } from "../util.js";

export function renderSignin(main, reason, done) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-error" });
  const err = h("p", { class: "field-error", id: "token-error", role: "alert" }, reason || "");
  const btn = h("button", { type: "submit", class: "primary", id: "signin-submit" }, "Sign in");
  const form = h("form", { class: "card signin", id: "signin", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste a team token (", h("code", {}, "dnnpress token create --team …"), " or the one ", h("code", {}, "make demo"), " prints). It is kept in this tab only."),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input, err), btn);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    err.textContent = "";
    if (!t) { err.textContent = "Paste a token first."; input.focus(); return; }
    btn.disabled = true;
    try {
      const me = await get("/api/v1/me", { token: t });
      if (me.scope !== "team") {
        err.textContent = `This is ${me.scope === "admin" ? "an admin" : "an " + me.scope} token: the dashboard shows one team's jobs, so sign in with a team token.`;
        input.focus();
        return;
      }
      setToken(t);
      done(me);
    } catch (e) {
      err.textContent = e.status === 401 ? `Token refused: ${e.message}.` : `Could not check the token: ${e.message}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      btn.disabled = false;
    }
  });
  fill(main, form);
  input.focus();
}
