package fakegoogle

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The scopes the directory APIs accept.
const (
	ScopeDirectoryGroupReadonly = "https://www.googleapis.com/auth/admin.directory.group.readonly"
	ScopeDirectoryGroup         = "https://www.googleapis.com/auth/admin.directory.group"
	ScopeCloudIdentityReadonly  = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"
	ScopeCloudIdentity          = "https://www.googleapis.com/auth/cloud-identity.groups"
)

const (
	jwtBearer      = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	groupsPath     = "/admin/directory/v1/groups"
	transitivePath = "/v1/groups/-/memberships:searchTransitiveGroups"
	// LabelDiscussionForum is the label every Google Group carries.
	LabelDiscussionForum = "cloudidentity.googleapis.com/groups.discussion_forum"
	// LabelSecurity marks a security group.
	LabelSecurity = "cloudidentity.googleapis.com/groups.security"
)

// Group is a Google Group.
type Group struct {
	Email, Name string
	Members     []string // direct members: users' or other groups' e-mail addresses
	Security    bool     // also labelled as a security group
}

// SetGroup adds or replaces a group by e-mail.
func (s *Server) SetGroup(g Group) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[strings.ToLower(g.Email)] = g
}

// FailAPI makes the next n directory API requests answer status with
// Google's error JSON.
func (s *Server) FailAPI(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail, s.failStatus = n, status
}

// Requests lists "METHOD path?query" of the directory API requests seen.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// serveAPI authenticates a directory API request: a service account's
// token, with a scope of the API, acting as an administrator.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	cloud := r.URL.Path == transitivePath
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	fail, status := s.fail > 0, s.failStatus
	if fail {
		s.fail--
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g, ok := s.access[tok]
	admin := s.users[strings.ToLower(g.email)].Admin
	s.mu.Unlock()
	if fail {
		apiError(w, cloud, status, map[int]string{500: "Internal error encountered.", 503: "The service is currently unavailable."}[status], "backendError")
		return
	}
	if r.Method != http.MethodGet {
		apiError(w, cloud, http.StatusMethodNotAllowed, "Method Not Allowed", "httpMethodNotAllowed")
		return
	}
	if !ok || time.Now().After(g.expires) {
		apiError(w, cloud, http.StatusUnauthorized, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.", "authError")
		return
	}
	need := []string{ScopeDirectoryGroupReadonly, ScopeDirectoryGroup}
	if cloud {
		need = []string{ScopeCloudIdentityReadonly, ScopeCloudIdentity}
	}
	have := strings.Fields(g.scope)
	if !contains(have, need[0]) && !contains(have, need[1]) {
		apiError(w, cloud, http.StatusForbidden, "Request had insufficient authentication scopes.", "insufficientPermissions")
		return
	}
	if g.account == "" || !admin {
		apiError(w, cloud, http.StatusForbidden, "Not Authorized to access this resource/api", "forbidden")
		return
	}
	if cloud {
		s.searchTransitiveGroups(w, r)
		return
	}
	s.listGroups(w, r)
}

// listGroups is groups.list?userKey=: the groups the user is a direct
// member of.
func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	size, ok := pageSize(q.Get("maxResults"), 200, 200, s.cfg.MaxPageSize)
	if !ok {
		apiError(w, false, http.StatusBadRequest, fmt.Sprintf("Invalid value '%s'. Values must be within the range: [1, 200]", q.Get("maxResults")), "invalid")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	email := ""
	for _, u := range s.users {
		if q.Get("userKey") != "" && (strings.EqualFold(u.Email, q.Get("userKey")) || u.Subject == q.Get("userKey")) {
			email = u.Email
		}
	}
	if email == "" {
		apiError(w, false, http.StatusNotFound, "Resource Not Found: userKey", "notFound")
		return
	}
	direct, _ := s.memberOf(email)
	from, to, next, ok := paginate(len(direct), size, q.Get("pageToken"), "groups:"+email)
	if !ok {
		apiError(w, false, http.StatusBadRequest, "Invalid Input: pageToken", "invalid")
		return
	}
	resp := map[string]any{"kind": "admin#directory#groups", "etag": etag("groups:" + email)}
	var items []any
	for _, e := range direct[from:to] {
		g := s.groups[e]
		items = append(items, map[string]any{
			"kind": "admin#directory#group", "id": groupID(g.Email), "etag": etag(g.Email), "email": g.Email, "name": g.Name,
			"directMembersCount": strconv.Itoa(len(g.Members)), "description": "", "adminCreated": true,
		})
	}
	if len(items) > 0 {
		resp["groups"] = items
	}
	if next != "" {
		resp["nextPageToken"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

var (
	memberQuery = regexp.MustCompile(`member_key_id\s*==\s*'([^']*)'`)
	labelQuery  = regexp.MustCompile(`'([^']+)'\s+in\s+labels`)
)

// searchTransitiveGroups answers groups/-/memberships:searchTransitiveGroups
// for the query member_key_id == '...' && '<label>' in labels.
func (s *Server) searchTransitiveGroups(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m, l := memberQuery.FindStringSubmatch(q.Get("query")), labelQuery.FindStringSubmatch(q.Get("query"))
	size, ok := pageSize(q.Get("pageSize"), 200, 1000, s.cfg.MaxPageSize)
	if m == nil || l == nil || !ok {
		apiError(w, true, http.StatusBadRequest, "Request contains an invalid argument.", "badRequest")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, relation := s.memberOf(m[1])
	var found []string
	for e := range relation {
		if _, ok := labels(s.groups[e])[l[1]]; ok {
			found = append(found, e)
		}
	}
	sort.Strings(found)
	from, to, next, ok := paginate(len(found), size, q.Get("pageToken"), "transitive:"+q.Get("query"))
	if !ok {
		apiError(w, true, http.StatusBadRequest, "Request contains an invalid argument.", "badRequest")
		return
	}
	resp := map[string]any{}
	var items []any
	for _, e := range found[from:to] {
		g := s.groups[e]
		items = append(items, map[string]any{
			"group": "groups/" + groupID(g.Email), "groupKey": map[string]string{"id": g.Email}, "displayName": g.Name,
			"labels": labels(g), "relationType": relation[e], "roles": []any{map[string]string{"role": "MEMBER"}},
		})
	}
	if len(items) > 0 {
		resp["memberships"] = items
	}
	if next != "" {
		resp["nextPageToken"] = next
	}
	writeJSON(w, http.StatusOK, resp)
}

// memberOf returns the groups member belongs to directly (sorted) and
// every group it belongs to through nesting, with Cloud Identity's
// relation type. s.mu is held.
func (s *Server) memberOf(member string) ([]string, map[string]string) {
	parents := func(m string) []string {
		var out []string
		for e, g := range s.groups {
			for _, x := range g.Members {
				if strings.EqualFold(x, m) {
					out = append(out, e)
				}
			}
		}
		sort.Strings(out)
		return out
	}
	direct := parents(member)
	relation := map[string]string{}
	for _, e := range direct {
		relation[e] = "DIRECT"
	}
	queue, seen := append([]string(nil), direct...), map[string]bool{}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h] {
			continue
		}
		seen[h] = true
		for _, p := range parents(h) {
			switch relation[p] {
			case "":
				relation[p] = "INDIRECT"
			case "DIRECT":
				relation[p] = "DIRECT_AND_INDIRECT"
			}
			queue = append(queue, p)
		}
	}
	return direct, relation
}

func labels(g Group) map[string]string {
	l := map[string]string{LabelDiscussionForum: ""}
	if g.Security {
		l[LabelSecurity] = ""
	}
	return l
}

// pageSize reads a page size parameter: def when absent, at most max (and
// limit, when set); false when it is not a number within [1, max].
func pageSize(raw string, def, max, limit int) (int, bool) {
	n := def
	if raw != "" {
		v, err := strconv.Atoi(raw)
		if err != nil || v < 1 || v > max {
			return 0, false
		}
		n = v
	}
	if limit > 0 && n > limit {
		n = limit
	}
	return n, true
}

// paginate returns the slice [from, to) of n items for a page token bound
// to one query, and the next page's token ("" on the last page).
func paginate(n, size int, token, query string) (from, to int, next string, ok bool) {
	if token != "" {
		raw, err := base64.RawURLEncoding.DecodeString(token)
		off, q, found := strings.Cut(string(raw), "|")
		v, convErr := strconv.Atoi(off)
		if err != nil || !found || q != query || convErr != nil || v < 0 || v > n {
			return 0, 0, "", false
		}
		from = v
	}
	to = min(from+size, n)
	if to < n {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(to) + "|" + query))
	}
	return from, to, next, true
}

func groupID(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "0" + hex.EncodeToString(sum[:7])
}

func etag(s string) string {
	sum := sha256.Sum256([]byte(s))
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// apiError answers with Google's error JSON. The Admin SDK lists the
// error in errors[] as well; Cloud Identity gives code, message, status.
func apiError(w http.ResponseWriter, cloud bool, code int, message, reason string) {
	e := map[string]any{"code": code, "message": message, "status": statusName(code)}
	if !cloud {
		e["errors"] = []any{map[string]string{"message": message, "domain": "global", "reason": reason}}
	}
	writeJSON(w, code, map[string]any{"error": e})
}

func statusName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	}
	return "INTERNAL"
}
