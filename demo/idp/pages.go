package idp

import (
	"html/template"
	"net/http"
)

// The HTML pages: the login form and the result of a logout request.

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo sign-in</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#eef1f5;font:16px/1.5 system-ui,sans-serif;color:#1d2329;padding:16px}
form{background:#fff;border-radius:12px;padding:28px 24px;width:100%;max-width:360px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.6rem 0 .2rem;font-size:.9rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;border:1px solid #b8c0c8;border-radius:8px;font:inherit}
button{width:100%;margin-top:1rem;padding:.7rem;border:0;border-radius:8px;background:#6b3fd4;color:#fff;font:inherit;font-weight:600}
.bad{color:#b3261e}
</style></head><body>
<form method="post" action="{{.Action}}">
<h1>Demo sign-in</h1>
{{if .Error}}<p class="bad" id="idp-error">{{.Error}}</p>{{end}}
{{if .Usable}}
<input type="hidden" name="client_id" value="{{.Req.ClientID}}">
<input type="hidden" name="redirect_uri" value="{{.Req.RedirectURI}}">
<input type="hidden" name="state" value="{{.Req.State}}">
<input type="hidden" name="nonce" value="{{.Req.Nonce}}">
<input type="hidden" name="scope" value="{{.Req.Scope}}">
<input type="hidden" name="code_challenge" value="{{.Req.Challenge}}">
<input type="hidden" name="code_challenge_method" value="S256">
<input type="hidden" name="response_type" value="code">
<label for="username">E-mail or user name</label>
<input type="text" id="username" name="username" autocomplete="username" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<button type="submit" id="login">Sign in</button>
{{end}}
</form></body></html>`))

const badLogin = "Invalid username or password"

// page shows the login form; for a malformed request it shows only the
// problem, since the form would post it back to the same broken place.
func (p *Provider) page(w http.ResponseWriter, status int, ar authRequest, problem string) {
	usable := problem == "" || problem == badLogin
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, map[string]any{"Action": p.issuer + "/auth", "Req": ar, "Error": problem, "Usable": usable})
}

var logoutTemplate = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo sign-out</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#eef1f5;font:16px/1.5 system-ui,sans-serif;color:#1d2329;padding:16px}
main{background:#fff;border-radius:12px;padding:28px 24px;width:100%;max-width:360px;box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:1.3rem;margin:0 0 1rem}.bad{color:#b3261e}
</style></head><body><main>
{{if .Error}}<h1>Sign-out failed</h1>
<p class="bad" id="idp-error">{{.Error}}</p>
{{else}}<h1>Signed out</h1>
<p id="idp-signed-out">You are signed out of the demo identity provider.</p>
{{end}}
</main></body></html>`))

// logoutPage shows the result of a logout request: signed out, or the
// problem with the request.
func (p *Provider) logoutPage(w http.ResponseWriter, status int, problem string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = logoutTemplate.Execute(w, map[string]any{"Error": problem})
}
