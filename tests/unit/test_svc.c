#include <criterion/criterion.h>
Test(svc, placeholder) { cr_assert(1); }
