package rehydrate

import (
	"errors"
	"fmt"
)

// OpRef starts a pipeline with the output of another artifact of the recipe (Step.Ref, its ID).
const OpRef = "ref"

type refParams struct{ ID string }

func (p refParams) Validate() error {
	if p.ID == "" {
		return errors.New("ref names no artifact")
	}
	return nil
}

func init() {
	register(opSpec[refParams]{
		name:   OpRef,
		source: true,
		params: func(s *Step) (refParams, error) { return refParams{s.Ref}, nil },
		str:    func(s *Step) string { return fmt.Sprintf("ref(%s)", s.Ref) },
		ref:    func(p refParams) string { return p.ID },
		apply: func(c *call, p refParams, _ *value) (*value, error) {
			ref, ok := c.e.recipe.Artifact(p.ID)
			if !ok {
				return nil, fmt.Errorf("%w: unknown artifact %q", ErrBadRecipe, p.ID)
			}
			f, tee := c.e.claimRef(ref.ID)
			if f != nil {
				// Rebuilt already (for another artifact, or written out and kept): read that.
				return &value{key: refKey(ref.ID), ra: f, size: ref.Size}, nil
			}
			v, err := c.e.open(c.ctx, ref, c.depth+1)
			if err != nil {
				if tee != nil {
					tee.finish(err)
				}
				return nil, fmt.Errorf("%s: %w", ref.Name, err)
			}
			v.key = refKey(ref.ID)
			if v.size < 0 {
				v.size = ref.Size
			}
			if tee != nil {
				// Other expected artifacts read it too: rebuild it once, into the spool.
				n, err := tee.fill(v)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", ref.Name, err)
				}
				v = &value{key: v.key, ra: tee.f, size: n}
			}
			return v, nil
		},
	})
}
