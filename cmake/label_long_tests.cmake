# Read by CTest after the discovered gtests: those whose name contains "Long" get the label long
# instead of unit, so that `ctest -L long` runs only them and `ctest -LE long` all the others.
foreach(test IN LISTS deltatrain_tests_TESTS)
  if(test MATCHES "Long")
    set_tests_properties("${test}" PROPERTIES LABELS long)
  endif()
endforeach()
