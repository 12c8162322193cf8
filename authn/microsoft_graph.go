package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/identity"
)

// Bounds on reading groups from Graph (up to 999 a page), so that a
// runaway or hostile next-link chain cannot keep a sign-in busy forever.
const (
	msGraphMaxPages  = 100
	msGraphMaxGroups = 10000
)

// identityFrom builds the identity from verified ID token claims, reading
// the groups from Graph with accessToken when the token has too many to
// list.
//
// The e-mail address is verified only when the token carries xms_edov
// true: Entra's email claim is the mail attribute, which an administrator
// of the user's tenant (any tenant, with organizations) can set to any
// address, and which Entra does not check. preferred_username (the UPN for
// members) is not taken as a verified address either: Microsoft calls it
// mutable and unfit for authorization, for guests it is their home
// address, and a UPN is an account name that need not receive mail; the
// token does not say which case it is.
func (m *Microsoft) identityFrom(ctx context.Context, claims map[string]any, accessToken string) (identity.Identity, error) {
	tid, oid := claimString(claims, "tid"), claimString(claims, "oid")
	var ids []string
	if msOverage(claims) {
		var err error
		if ids, err = m.graphGroups(ctx, accessToken); err != nil {
			return identity.Identity{}, err
		}
	} else {
		ids = claimStrings(claims, "groups")
	}
	groups := make([]string, 0, len(ids))
	for _, id := range ids {
		id = identity.LowerASCII(id)
		if !tenantGUID.MatchString(id) {
			// Only object ids decide access: an app set up to emit names
			// (sAMAccountName, display names) would let names that anyone
			// can give a group pass for it.
			continue
		}
		if name, ok := m.groupNames[id]; ok {
			id = name
		}
		groups = append(groups, id)
	}
	if m.cfg.RolesAsGroups {
		for _, role := range claimStrings(claims, "roles") {
			// An app role may not pass for a group: not for an object id,
			// nor for a name group_names gives one.
			if tenantGUID.MatchString(identity.LowerASCII(role)) || m.isGroupName(role) {
				continue
			}
			groups = append(groups, role)
		}
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	// The address is kept only when Entra vouches for it (xms_edov): an
	// unverified one is whatever an administrator typed, and upstreams
	// read X-Forwarded-Email as who the user is.
	email := claimString(claims, "email")
	verified := email != "" && msTrue(claims["xms_edov"])
	if !verified {
		email = ""
	}
	user := identity.LowerASCII(claimString(claims, "preferred_username"))
	if user == "" {
		user = oid
	}
	return identity.Identity{
		Provider:          m.Name(),
		Subject:           tid + ":" + oid, // oid alone is unique only within its tenant
		User:              user,
		Email:             email,
		EmailVerified:     verified,
		Name:              claimString(claims, "name"),
		PreferredUsername: claimString(claims, "preferred_username"),
		Groups:            groups,
	}, nil
}

// msOverage reports whether the token signals more groups than it lists:
// the distributed groups claim (_claim_names.groups, the code flow's
// overage) or hasgroups (the implicit flow's).
func msOverage(claims map[string]any) bool {
	if names, ok := claims["_claim_names"].(map[string]any); ok {
		if _, ok := names["groups"]; ok {
			return true
		}
	}
	return msTrue(claims["hasgroups"])
}

// msTrue reads a boolean claim Entra sends as true, "true" or "1".
func msTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true") || v == "1"
	}
	return false
}

// graphGroups reads the object ids of every group the signed-in user is a
// member of, directly or through nested groups, from Microsoft Graph
// /me/transitiveMemberOf with the user's own access token (User.Read is
// enough). The overage claim's endpoint is not followed: it names the
// retired Azure AD Graph, and the token goes only to graph_url. Only ids
// are asked for: display names are not unique and a group's owners can
// rename it, so only ids (and their group_names) decide access. Directory
// roles and administrative units in the answer are skipped.
func (m *Microsoft) graphGroups(ctx context.Context, accessToken string) ([]string, error) {
	next := m.graph.String() + "/v1.0/me/transitiveMemberOf?$select=id&$top=999"
	var ids []string
	for page := 0; next != ""; page++ {
		if page == msGraphMaxPages {
			return nil, fmt.Errorf("microsoft graph: more than %d pages of groups", msGraphMaxPages)
		}
		var body struct {
			Value []struct {
				Type string `json:"@odata.type"`
				ID   string `json:"id"`
			} `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := m.graphGet(ctx, accessToken, next, &body); err != nil {
			return nil, err
		}
		for _, v := range body.Value {
			if v.Type == "#microsoft.graph.group" && v.ID != "" {
				ids = append(ids, v.ID)
			}
		}
		if len(ids) > msGraphMaxGroups {
			return nil, fmt.Errorf("microsoft graph: more than %d groups", msGraphMaxGroups)
		}
		next = body.NextLink
		if u, err := url.Parse(next); next != "" && (err != nil || u.Scheme != m.graph.Scheme || u.Host != m.graph.Host) {
			return nil, errors.New("microsoft graph: next page link leaves graph_url")
		}
	}
	return ids, nil
}

// graphGet fetches one Graph resource into v. Every failure is an
// error: the callers decide (refuse the sign-in, or keep the session in
// grace), since even a 401 right after Entra issued the token says more
// about Graph than about the user.
func (m *Microsoft) graphGet(ctx context.Context, accessToken, rawURL string, v any) error {
	resp, body, err := getBearer(ctx, m.client, accessToken, rawURL, 8<<20, nil)
	if err != nil {
		return fmt.Errorf("microsoft graph: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// Graph's error JSON: {"error": {"code": ..., "message": ...}}.
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("microsoft graph %s: status %d %s", resp.Request.URL.Path, resp.StatusCode, truncate(e.Error.Code, 64))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("microsoft graph %s: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// isGroupName reports whether name is one group_names gives a group.
func (m *Microsoft) isGroupName(name string) bool {
	for _, n := range m.groupNames {
		if n == name {
			return true
		}
	}
	return false
}
