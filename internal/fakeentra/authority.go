package fakeentra

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// This file is the authority itself: discovery, the authorization
// endpoint and its sign-in form.

func (s *Server) discovery(w http.ResponseWriter, r *http.Request, tenant string) {
	base := s.base(r)
	tid, ok := s.resolve(tenant)
	if !ok {
		entraError(w, base, http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	seg, issTenant := tid, tid
	if tid == "" {
		seg, issTenant = strings.ToLower(tenant), "{tenantid}"
	}
	authority := base + "/" + seg
	doc := map[string]any{
		"token_endpoint":                        authority + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              authority + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/" + issTenant + "/v2.0",
		"request_uri_parameter_supported":       false,
		"userinfo_endpoint":                     "https://graph.microsoft.com/oidc/userinfo",
		"authorization_endpoint":                authority + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         authority + "/oauth2/v2.0/devicecode",
		"http_logout_supported":                 true,
		"frontchannel_logout_supported":         true,
		"end_session_endpoint":                  authority + "/oauth2/v2.0/logout",
		"claims_supported": []string{"sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
			"msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver",
			"at_hash", "c_hash", "email"},
		"kerberos_endpoint":        authority + "/kerberos",
		"cloud_instance_name":      "microsoftonline.com",
		"cloud_graph_host_name":    "graph.windows.net",
		"msgraph_host":             "graph.microsoft.com",
		"rbac_url":                 "https://pas.windows.net",
		"tenant_region_scope":      nil,
		"tenant_region_sub_scope":  nil,
		"cloud_instance_host_name": strings.TrimPrefix(strings.TrimPrefix(base, "https://"), "http://"),
	}
	if tid != "" {
		doc["tenant_region_scope"] = "EU"
	}
	writeJSON(w, http.StatusOK, doc)
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body><form method="post" action="{{.Action}}"><div role="heading">Sign in</div>
{{if .Error}}<div id="usernameError" role="alert">{{.Error}}</div>{{end}}
{{range $k, $v := .Hidden}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<input type="email" name="loginfmt" id="i0116" autocomplete="username" placeholder="Email, phone, or Skype">
<input type="password" name="passwd" id="i0118" autocomplete="current-password" placeholder="Password">
<input type="submit" id="idSIButton9" value="Sign in"></form></body></html>`))

// authParams are the authorization request's parameters the login form
// carries through.
var authParams = []string{"client_id", "redirect_uri", "response_type", "response_mode", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method", "prompt", "login_hint", "domain_hint"}

// checkAuthorize validates an authorization request; "" means fine.
func (s *Server) checkAuthorize(v url.Values) (string, int) {
	switch {
	case v.Get("client_id") != s.cfg.ClientID:
		return fmt.Sprintf("Application with identifier '%s' was not found in the directory.", v.Get("client_id")), 700016
	case !slices.Contains(s.cfg.RedirectURIs, v.Get("redirect_uri")):
		return fmt.Sprintf("The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application.", v.Get("redirect_uri")), 50011
	case v.Get("response_type") != "code":
		return "The provided value for the input parameter 'response_type' is not allowed for this client.", 700054
	case v.Get("response_mode") != "" && v.Get("response_mode") != "query":
		return "This fake answers with response_mode=query only.", 900144
	case v.Get("code_challenge") != "" && v.Get("code_challenge_method") != "S256":
		return "Proof Key for Code Exchange is required with S256.", 501491
	}
	return "", 0
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	if _, ok := s.resolve(tenant); !ok {
		s.page(w, http.StatusBadRequest, tenant, nil, fmt.Sprintf("AADSTS90002: Tenant '%s' not found.", tenant))
		return
	}
	if msg, n := s.checkAuthorize(q); msg != "" {
		s.page(w, http.StatusBadRequest, tenant, nil, fmt.Sprintf("AADSTS%d: %s", n, msg))
		return
	}
	hidden := map[string]string{}
	for _, k := range authParams {
		if q.Has(k) {
			hidden[k] = q.Get(k)
		}
	}
	s.page(w, http.StatusOK, tenant, hidden, "")
}

func (s *Server) page(w http.ResponseWriter, status int, tenant string, hidden map[string]string, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = loginPage.Execute(w, map[string]any{"Action": "/" + tenant + "/login", "Hidden": hidden, "Error": msg})
}

// login checks the credentials of the sign-in form and sends the browser
// back to the client with a code.
func (s *Server) login(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	f := r.PostForm
	hidden := map[string]string{}
	for _, k := range authParams {
		if f.Has(k) {
			hidden[k] = f.Get(k)
		}
	}
	tid, ok := s.resolve(tenant)
	if msg, _ := s.checkAuthorize(f); !ok || msg != "" {
		s.page(w, http.StatusBadRequest, tenant, nil, "AADSTS900144: The request is not valid.")
		return
	}
	s.mu.Lock()
	u, found := s.users[strings.ToLower(f.Get("loginfmt"))]
	s.mu.Unlock()
	switch {
	case !found || u.Password != f.Get("passwd"):
		s.page(w, http.StatusUnauthorized, tenant, hidden, "Your account or password is incorrect.")
		return
	case tid == ConsumersTenantID || (tid != "" && tid != u.TenantID):
		s.page(w, http.StatusBadRequest, tenant, hidden, fmt.Sprintf("AADSTS50020: User account '%s' from identity provider does not exist in tenant '%s'.", u.UserPrincipalName, tenant))
		return
	}
	c := random()
	s.mu.Lock()
	s.codes[c] = code{
		grant:       grant{tid: u.TenantID, oid: u.OID, sid: uuid(), scopes: strings.Fields(f.Get("scope"))},
		redirectURI: f.Get("redirect_uri"), challenge: f.Get("code_challenge"), nonce: f.Get("nonce"),
		expires: time.Now().Add(10 * time.Minute),
	}
	s.mu.Unlock()
	back, _ := url.Parse(f.Get("redirect_uri"))
	bq := back.Query()
	bq.Set("code", c)
	if f.Has("state") {
		bq.Set("state", f.Get("state"))
	}
	bq.Set("session_state", uuid())
	back.RawQuery = bq.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}
