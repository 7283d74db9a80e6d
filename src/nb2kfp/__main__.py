from nb2kfp.main import main

main()
