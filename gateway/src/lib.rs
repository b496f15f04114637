//! plexgate's gateway (issues 4 and 5): login, tokens, revocation and routing to API
//! services. Not built yet.
