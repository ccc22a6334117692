#include <criterion/criterion.h>
Test(lb, placeholder) { cr_assert(1); }
