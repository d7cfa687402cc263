package auth

import "github.com/google/uuid"

// A user's identifier is derived, not drawn (spec section 9, issue 17
// item 7): the UUID version 5 (RFC 9562: SHA-1, name-based) of the
// provider's name and the account's stable subject, under a namespace of
// the deployment. So the same account gets the same identifier again after
// Redis lost its data, on every node, with no coordination; and without
// the deployment's key nobody can tell which account an identifier
// belongs to, or compute the identifier an account has elsewhere.
//
// The namespace is the UUID version 5 of Config.IdentityKey
// (CHAT_IDENTITY_KEY) under rootNamespace. Without a key it is that of
// the empty key: identifiers are just as stable, but the same as those of
// every other deployment without a key, and computable by anyone who
// knows an account's subject. Changing the key changes the identifier of
// every account that logs in for the first time afterwards (or after a
// data loss); the users already stored keep theirs.
//
// The store keeps the link from account to user as before, and a link
// wins over the derived identifier: users created before identifiers were
// derived (a random UUID) keep theirs.

// rootNamespace is this project's own, fixed forever: every deployment's
// namespace is derived under it.
var rootNamespace = uuid.MustParse("b2ac8568-4675-4805-840d-ec5629c5a8ec")

// identityNamespace returns the namespace of a deployment's key.
func identityNamespace(key string) uuid.UUID {
	return uuid.NewSHA1(rootNamespace, []byte(key))
}

// deriveUserID returns the identifier of the account subject at provider
// (its name in URLs; DevProvider and the username for dev login) under ns.
func deriveUserID(ns uuid.UUID, provider, subject string) string {
	return uuid.NewSHA1(ns, []byte(provider+"\x00"+subject)).String()
}
