package oidc

import "context"

// PublicOriginKnown is publicOrigin, for tests outside the package (it
// reads the public clients' origins when they are not cached).
func (p *Provider) PublicOriginKnown(ctx context.Context, origin string) bool {
	return p.publicOrigin(ctx, origin)
}
