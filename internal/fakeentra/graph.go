package fakeentra

import (
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// graphError writes Microsoft Graph's error JSON.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code": code, "message": msg,
		"innerError": map[string]any{
			"date": time.Now().UTC().Format("2006-01-02T15:04:05"), "request-id": uuid(), "client-request-id": uuid(),
		},
	}})
}

// groupReaders are the delegated permissions that let the caller read
// groups' properties; with only User.Read, Graph still lists the user's
// memberships but returns "limited information": @odata.type and id.
var groupReaders = []string{"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"}

// serveGraph serves GET /v1.0/me/transitiveMemberOf, and its OData cast
// /v1.0/me/transitiveMemberOf/microsoft.graph.group, with the user's
// access token.
func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.graphReqs = append(s.graphReqs, r.Method+" "+r.URL.RequestURI())
	fail := s.graphSkip == 0 && s.graphFail > 0
	switch {
	case s.graphSkip > 0:
		s.graphSkip--
	case fail:
		s.graphFail--
	}
	failCode, nextBase := s.graphCode, s.nextBase
	s.mu.Unlock()
	if fail {
		code := "generalException"
		if failCode == http.StatusServiceUnavailable {
			code = "serviceNotAvailable"
		}
		graphError(w, failCode, code, "The service is temporarily unavailable.")
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	g, ok := s.access[tok]
	var u User
	for _, x := range s.users {
		if x.OID == g.oid && x.TenantID == g.tid {
			u = x
		}
	}
	s.mu.Unlock()
	switch {
	case tok == "":
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return
	case !ok || u.OID == "":
		graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed, there are no dots (.).")
		return
	case !slices.Contains(g.scopes, "User.Read") && !slices.ContainsFunc(g.scopes, func(x string) bool { return slices.Contains(groupReaders, x) }):
		graphError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
		return
	}
	cast := false
	switch r.URL.Path {
	case "/v1.0/me/transitiveMemberOf":
	case "/v1.0/me/transitiveMemberOf/microsoft.graph.group":
		cast = true
	default:
		graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource '"+r.URL.Path+"' does not exist or one of its queried reference-property objects are not present.")
		return
	}
	s.transitiveMemberOf(w, r, u, cast, slices.ContainsFunc(g.scopes, func(x string) bool { return slices.Contains(groupReaders, x) }), nextBase)
}

func (s *Server) transitiveMemberOf(w http.ResponseWriter, r *http.Request, u User, cast, readGroups bool, nextBase string) {
	q := r.URL.Query()
	top := 100
	if v := q.Get("$top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 999 {
			graphError(w, http.StatusBadRequest, "Request_BadRequest", "Invalid page size specified: '"+v+"'. Must be between 1 and 999 inclusive.")
			return
		}
		top = n
	}
	if s.cfg.GraphPageSize > 0 {
		top = min(top, s.cfg.GraphPageSize)
	}
	offset := 0
	if t := q.Get("$skiptoken"); t != "" {
		raw, err := base64.RawURLEncoding.DecodeString(t)
		n, err2 := strconv.Atoi(strings.TrimPrefix(string(raw), "RFNwdAIAAQAAA"))
		if err != nil || err2 != nil || n < 0 {
			graphError(w, http.StatusBadRequest, "Directory_ExpiredPageToken", "The specified page token value has expired and can no longer be included in your request.")
			return
		}
		offset = n
	}
	var sel []string
	if v := q.Get("$select"); v != "" {
		sel = strings.Split(v, ",")
	}
	type entry struct {
		typ, id, name string
	}
	var all []entry
	s.mu.Lock()
	for _, id := range u.Groups {
		all = append(all, entry{"#microsoft.graph.group", id, s.groups[id].DisplayName})
	}
	s.mu.Unlock()
	if !cast {
		for _, id := range u.DirectoryRoles {
			all = append(all, entry{"#microsoft.graph.directoryRole", id, "Directory Readers"})
		}
	}
	from := min(offset, len(all))
	to := min(from+top, len(all))
	items := []map[string]any{}
	for _, e := range all[from:to] {
		item := map[string]any{"id": e.id, "displayName": nil}
		if readGroups || e.typ != "#microsoft.graph.group" {
			item["displayName"] = e.name
		}
		if e.typ == "#microsoft.graph.group" && sel == nil {
			item["securityEnabled"], item["mailEnabled"], item["groupTypes"] = true, false, []string{}
		}
		if sel != nil {
			for k := range item {
				if !slices.Contains(sel, k) {
					delete(item, k)
				}
			}
		}
		if !cast {
			item["@odata.type"] = e.typ
		}
		items = append(items, item)
	}
	base := s.base(r)
	ctx := base + "/v1.0/$metadata#directoryObjects"
	if cast {
		ctx = base + "/v1.0/$metadata#groups"
	}
	if sel != nil {
		ctx += "(" + strings.Join(sel, ",") + ")"
	}
	out := map[string]any{"@odata.context": ctx, "value": items}
	if to < len(all) {
		if nextBase == "" {
			nextBase = base
		}
		// Graph's next links keep the query and add an opaque $skiptoken.
		var keep []string
		for _, p := range strings.Split(r.URL.RawQuery, "&") {
			if p != "" && !strings.HasPrefix(p, "$skiptoken=") && !strings.HasPrefix(p, "%24skiptoken=") {
				keep = append(keep, p)
			}
		}
		keep = append(keep, "$skiptoken="+base64.RawURLEncoding.EncodeToString([]byte("RFNwdAIAAQAAA"+strconv.Itoa(to))))
		out["@odata.nextLink"] = nextBase + r.URL.Path + "?" + strings.Join(keep, "&")
	}
	writeJSON(w, http.StatusOK, out)
}
