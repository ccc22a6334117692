#include <criterion/criterion.h>
Test(yamljson, placeholder) { cr_assert(1); }
