// The login page: takes the one-time code from the link's fragment (#code=...), which browsers never send to a
// server, removes it from the address bar, and posts it. A wrong or used code comes back as ?error=code.
const form = document.getElementById("login");
const input = document.getElementById("code");
const error = document.getElementById("error");

const messages = {
  code: "That code is wrong, expired or already used. Run `sub dashboard` for a new one.",
  origin: "The login was refused because it did not come from this page. Try again.",
  wait: "Too many wrong codes from this browser: wait a minute, then use the code `sub dashboard` prints.",
};
const problem = new URLSearchParams(location.search).get("error");
if (problem) {
  error.textContent = messages[problem] || "Log in failed.";
  error.hidden = false;
}

const fromLink = new URLSearchParams(location.hash.slice(1)).get("code");
if (fromLink) {
  history.replaceState(null, "", location.pathname);
  input.value = fromLink;
  form.requestSubmit();
} else {
  input.focus();
}
