package client

import (
	"errors"
	"fmt"
)

var errExecuteArgs = errors.New("malformed execute arguments")

// checkExecuteArgs validates Execute arguments (Core §5.4.5): a comma
// separated list of digit, or digit='value' where value holds no quote.
// An empty string is no arguments.
func checkExecuteArgs(s string) error {
	i := 0
	for i < len(s) {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("%w: argument at %d is not a digit", errExecuteArgs, i)
		}
		i++
		if i < len(s) && s[i] == '=' {
			i++
			if i >= len(s) || s[i] != '\'' {
				return fmt.Errorf("%w: value at %d is not quoted", errExecuteArgs, i)
			}
			i++
			for i < len(s) && s[i] != '\'' {
				c := s[i]
				if c < 0x20 || c > 0x7e {
					return fmt.Errorf("%w: byte %#x at %d", errExecuteArgs, c, i)
				}
				i++
			}
			if i >= len(s) {
				return fmt.Errorf("%w: unterminated value", errExecuteArgs)
			}
			i++
		}
		if i < len(s) {
			if s[i] != ',' || i == len(s)-1 {
				return fmt.Errorf("%w: expected ',' between arguments at %d", errExecuteArgs, i)
			}
			i++
		}
	}
	return nil
}
