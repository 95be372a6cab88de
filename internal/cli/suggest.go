package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// didYouMean adds to an unknown long flag's error the flags of fs it may
// have meant: one the name abbreviates (--grace for --grace-period), or
// one a typo or two away (--kill-timout).
func didYouMean(fs *pflag.FlagSet, err error) error {
	var ne *pflag.NotExistError
	if !errors.As(err, &ne) || ne.GetSpecifiedShortnames() != "" {
		return err
	}
	given := ne.GetSpecifiedName()
	if len(given) < 2 {
		return err // "--x": anything would be near
	}
	var near []string
	fs.VisitAll(func(f *pflag.Flag) {
		if strings.HasPrefix(f.Name, given) || strings.HasPrefix(given, f.Name) || editDistance(given, f.Name) <= 2 {
			near = append(near, "--"+f.Name)
		}
	})
	if len(near) == 0 {
		return err
	}
	return fmt.Errorf("%w; did you mean %s?", err, strings.Join(near, " or "))
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
