SetFactory("OpenCASCADE");
Box(1) = {0,0,0, 1,1,1};
Sphere(2) = {0.5,0.5,0.5, 0.3};
BooleanDifference{ Volume{1}; Delete; }{ Volume{2}; Delete; }
