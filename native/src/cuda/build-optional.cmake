# Builds libmixtile-cuda.so as its own CMake project and copies it to OUT; any failure is reported
# as a warning so the addon's build goes on without GPU support. Run by native/CMakeLists.txt:
#   cmake -DSRC=<this folder> -DBIN=<build folder> -DOUT=<addon folder> -DCUDA_COMPILER=<nvcc> -P build-optional.cmake
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${BIN} -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER}
          -DCMAKE_LIBRARY_OUTPUT_DIRECTORY=${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE log ERROR_VARIABLE log)
if(rc EQUAL 0)
  # Two jobs at most: nvcc is heavy, and the addon's own files may be compiling beside it.
  execute_process(COMMAND ${CMAKE_COMMAND} --build ${BIN} --parallel 2
    RESULT_VARIABLE rc OUTPUT_VARIABLE blog ERROR_VARIABLE blog)
  string(APPEND log "${blog}")
endif()
if(NOT rc EQUAL 0)
  file(REMOVE ${OUT}/libmixtile-cuda.so)
  string(LENGTH "${log}" len)
  if(len GREATER 4000)
    math(EXPR start "${len} - 4000")
    string(SUBSTRING "${log}" ${start} 4000 log)
  endif()
  message(WARNING "mixtile: building libmixtile-cuda.so failed; the addon works without GPU support.\n"
                  "Log (last part):\n${log}")
else()
  string(REGEX MATCH "mixtile-cuda: cuBLAS[^\n]*" blas "${log}")
  message(STATUS "mixtile: libmixtile-cuda.so built in ${OUT} ${blas}")
endif()
